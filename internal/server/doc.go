// Package server wires every part into the one-process `kiln server`: the
// consensus node and control plane on the data dir, the embedded worker with
// its sandbox backend, placement, the worker manager, counting, and the
// frontend's HTTP listener. On first start it creates the admin account and
// writes AWS-format credentials and config files into the data dir.
//
// It owns: start-up order, shutdown order, the data-dir lock.
//
// It must never: hold logic of its own beyond wiring; behaviour lives in the
// parts.
package server
