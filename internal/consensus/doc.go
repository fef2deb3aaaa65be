// Package consensus runs the one Raft node (hashicorp/raft) that several
// parts of Kiln share, and multiplexes its replicated log between them.
//
// Each part (the control plane's function store, the counting service's
// counters) registers a Part under a short name before the node starts.
// Commands are framed with that name, so one log and one snapshot carry
// every part's state, and a command is durable on disk (bolt log, fsync)
// before Apply returns.
//
// It owns: the Raft log and stable store (raft-boltdb), snapshots, the
// transport, bootstrapping (one voter, or a static peer list) and joining
// (Config.Join), the replicated member list (node id → internal HTTP
// address), command framing, the combined snapshot format, forwarding a
// follower's commands to the leader, and the cluster key that signs every
// node-to-node request (auth.go, routes under InternalPrefix).
//
// Forwarding keeps parts unchanged: the leader answers only the log index;
// the follower waits until its own replica has applied that index and
// returns the result its part computed there (Apply is deterministic, so it
// equals the leader's). A client that wrote through a node therefore reads
// its write on that node afterwards.
//
// It must never: interpret a part's commands or state, call a Part from more
// than the Raft FSM goroutine at a time, let a Part see wall-clock time or
// randomness (proposers put timestamps and ids into the command, so every
// replica computes the same state), retry a forwarded command whose request
// may have reached the leader (only dial failures and "not the leader"
// answers are retried), or serve an internal route without a valid
// signature.
package consensus
