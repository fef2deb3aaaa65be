// Package workermgr tracks every sandbox as idle or busy. It reserves an idle
// sandbox for an invoke, or claims a new one through placement and a worker;
// it takes the sandbox back after the invoke; it reclaims idle sandboxes
// after the keep-alive; and it drops sandboxes of retired function versions.
//
// It owns: the sandbox table (soft state; a restart forgets it and the
// sandboxes it named are destroyed with their worker).
//
// It must never: run two invokes in one sandbox at once, hand a sandbox to a
// different function version (Key) than the one it was made for, or admit
// invokes (counting decides admission before Reserve is called).
package workermgr
