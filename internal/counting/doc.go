// Package counting holds the view of in-flight concurrency per account and
// per function and decides admission: the account limit and reserved
// concurrency. A throttle is decided at once; counting never queues an
// invoke waiting for a slot.
//
// It owns: the replicated counting state (State, a consensus part named
// "counting": account limits, reservations and token leases) and the
// per-frontend admission (Counter).
//
// How the invoke path avoids Raft: each frontend's Counter leases blocks of
// tokens per pool (an account's unreserved pool, or one function's
// reservation) with a TTL, and admits locally against them. The state never
// grants more than a pool holds, so in-flight ≤ reservation and ≤ account
// limit across every frontend. A Counter renews every TTL/3, grows a pool
// that runs low in the background, and gives idle tokens back; a frontend
// that dies stops renewing, and its tokens return to the pool when any later
// command finds the lease expired. Lease times come from the proposer's
// clock inside the command, and the holder stops admitting a ClockSkew
// margin before its lease ends, so the safety argument needs clocks to agree
// within that margin.
//
// Scaler is the scaling rate (new execution environments per function per
// window, a continuously refilled token bucket); its buckets are local to a
// frontend. ClusterProposer and ForwardHandler carry counting commands from
// a follower to the Raft leader, since hashicorp/raft does not forward.
//
// It must never: block an invoke on I/O when leased tokens are at hand,
// or admit more than a limit allows.
package counting
