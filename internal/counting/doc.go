// Package counting holds the view of in-flight concurrency per account and
// per function and decides admission: the account limit, reserved
// concurrency, provisioned concurrency and the scaling rate. A throttle is
// decided at once; counting never queues an invoke waiting for a slot.
//
// It owns: the replicated counting state (State, a consensus part named
// "counting": account limits, reservations, provisioned-concurrency
// configurations and their status, token leases and the scaling buckets)
// and the per-frontend admission (Counter, Scaler).
//
// Provisioned concurrency is carved out as Lambda does: out of the
// function's reservation (on demand it may run reservation − provisioned),
// or, for a function without one, out of the account's unreserved pool
// (which GetAccountSettings reports net of it). Each configuration is a
// token pool of its own that invokes of its version or alias use first
// (WithInvoked names them), so provisioned invokes count too, and the
// bound holds across frontends whichever sandbox an invoke lands on.
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
// window, a continuously refilled token bucket). With NewSharedScaler the
// bucket is region-wide, in the replicated state, exact in integer
// nanoseconds of refill; frontends take tokens in small blocks that grow
// while cold starts keep coming and are dropped unused after a second, so
// the total never exceeds the rate and a burst costs a few Raft commands. ClusterProposer and ForwardHandler carry counting commands from
// a follower to the Raft leader, since hashicorp/raft does not forward.
//
// It must never: block an invoke on I/O when leased tokens are at hand,
// or admit more than a limit allows.
package counting
