// Package tenant carries the authenticated caller's account id through a
// request's context.
//
// It owns: the context key and its two accessors.
//
// It must never: authenticate anybody or look accounts up. Whoever puts an
// account into a context (the SigV4 check in the frontend) vouches for it;
// everybody else only reads it.
package tenant
