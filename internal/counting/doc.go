// Package counting holds the view of in-flight concurrency per account and
// per function and decides admission: the account limit, reserved
// concurrency and (later) the scaling rate. A throttle is decided at once;
// counting never queues an invoke waiting for a slot.
//
// It owns: the in-flight counters. Today they live in this process; the
// counting issue moves the limits onto Raft and hands frontends leased
// blocks of tokens so the invoke path never waits on consensus.
//
// It must never: block an invoke on I/O, or admit more than a limit allows.
package counting
