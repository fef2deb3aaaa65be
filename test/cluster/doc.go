// Package cluster tests `kiln server` as a three-node cluster of real
// processes on 127.0.0.1-3: writes through a follower, invokes on every
// node, reserved concurrency held across nodes while the leader is killed,
// a restarted node catching up (state and code), and the cluster key on
// internal routes.
package cluster
