// Package placement picks the worker host for a new sandbox, as a chain of
// feasibility filters and rank scorers over a snapshot of host load (the
// shape Nomad's scheduler uses): pack the fewest hosts close to full, prefer
// hosts that already hold the function's code, spread across zones.
//
// It owns: the policy and the host inventory it reads through Inventory.
//
// It must never: create sandboxes or talk to workers beyond asking their
// capacity; it proposes a host, workermgr acts.
package placement
