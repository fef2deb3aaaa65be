// Package consensus runs the one Raft node (hashicorp/raft) that several
// parts of Kiln share, and multiplexes its replicated log between them.
//
// Each part (the control plane's function store, later the counting
// service's counters) registers a Part under a short name before the node
// starts. Commands are framed with that name, so one log and one snapshot
// carry every part's state, and a command is durable on disk (bolt log,
// fsync) before Apply returns.
//
// It owns: the Raft log and stable store (raft-boltdb), snapshots, the
// transport, bootstrapping a single voter on first start, command framing and
// the combined snapshot format.
//
// It must never: interpret a part's commands or state, call a Part from more
// than the Raft FSM goroutine at a time, or let a Part see wall-clock time or
// randomness (proposers put timestamps and ids into the command, so every
// replica computes the same state). A static cluster (Config.Peers over TCP)
// bootstraps every voter with the same configuration; Apply works only on
// the leader (a part that needs writes from followers forwards them itself,
// as counting does). Joining a running cluster (Config.Join) is not
// implemented yet.
package consensus
