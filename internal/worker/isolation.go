package worker

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/internal/sandbox"
)

// Paths inside an isolated sandbox, as on Lambda.
const (
	sandboxTaskRoot   = "/var/task"
	sandboxRuntimeDir = "/var/runtime"
	// sandboxRuntimeAPI is the Runtime API's address in every isolated
	// sandbox: the worker listens inside the sandbox's own network.
	sandboxRuntimeAPI = "127.0.0.1:9001"
)

func (w *Worker) isolated() bool { return sandbox.IsIsolated(w.cfg.Backend) }

// isolatedMounts are the host directories an isolated sandbox sees, read-only:
// the function's code at /var/task and Kiln's bootstraps at /var/runtime.
func (w *Worker) isolatedMounts(hostTaskRoot string) []sandbox.Mount {
	return []sandbox.Mount{
		{Source: hostTaskRoot, Target: sandboxTaskRoot},
		{Source: w.runtimeDir, Target: sandboxRuntimeDir},
	}
}

// isolatedCommand is rt.Command in in-sandbox terms. The interpreter must
// be one the sandbox's root (the host's /usr and libraries) holds: a
// version manager's python under /root is not visible there.
func isolatedCommand(rt runtimes.Runtime, hostTaskRoot string) ([]string, error) {
	if rt.Family == runtimes.FamilyProvided {
		if _, err := rt.Command(hostTaskRoot, sandboxRuntimeDir); err != nil {
			return nil, err
		}
		return []string{filepath.Join(sandboxTaskRoot, "bootstrap")}, nil
	}
	argv, err := rt.Command(sandboxTaskRoot, sandboxRuntimeDir)
	if err != nil {
		return nil, err
	}
	argv[0], err = sandboxInterpreter(argv[0])
	return argv, err
}

func sandboxInterpreter(host string) (string, error) {
	for _, d := range []string{"/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/"} {
		if strings.HasPrefix(host, d) {
			return host, nil
		}
	}
	name := filepath.Base(host)
	if strings.HasPrefix(name, "python") {
		name = "python3"
	}
	for _, d := range []string{"/usr/bin/", "/usr/local/bin/"} {
		if fi, err := os.Stat(d + name); err == nil && !fi.IsDir() {
			return d + name, nil
		}
	}
	return "", fmt.Errorf("runtimes: %s is not visible inside the sandbox and no %s in /usr/bin or /usr/local/bin", host, name)
}

// listenInside opens the Runtime API listener in the sandbox's network.
func listenInside(ctx context.Context, box sandbox.Sandbox) (net.Listener, error) {
	l, ok := box.(sandbox.Listener)
	if !ok {
		return nil, fmt.Errorf("worker: isolated sandbox %s has no network of its own", box.ID())
	}
	return l.Listen(ctx, sandboxRuntimeAPI)
}
