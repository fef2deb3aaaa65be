package runtimes

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
)

// Runtime families.
const (
	FamilyProvided = "provided"
	FamilyPython   = "python"
	FamilyNodejs   = "nodejs"
)

// Runtime is one managed runtime that a function may name.
type Runtime struct {
	Name   string // as in FunctionConfiguration.Runtime, e.g. "python3.12"
	Family string // FamilyProvided, FamilyPython or FamilyNodejs
}

// known is the accepted runtime list. It is an array so that nothing outside
// this file can change it.
var known = [...]Runtime{
	{"nodejs18.x", FamilyNodejs},
	{"nodejs20.x", FamilyNodejs},
	{"nodejs22.x", FamilyNodejs},
	{"provided", FamilyProvided},
	{"provided.al2", FamilyProvided},
	{"provided.al2023", FamilyProvided},
	{"python3.10", FamilyPython},
	{"python3.11", FamilyPython},
	{"python3.12", FamilyPython},
	{"python3.13", FamilyPython},
	{"python3.9", FamilyPython},
}

// Lookup returns the runtime called name.
func Lookup(name string) (Runtime, bool) {
	for _, rt := range known {
		if rt.Name == name {
			return rt, true
		}
	}
	return Runtime{}, false
}

// Names returns every accepted runtime name, sorted, e.g. for the
// "Member must satisfy enum value set: [...]" validation message.
func Names() []string {
	out := make([]string, 0, len(known))
	for _, rt := range known {
		out = append(out, rt.Name)
	}
	sort.Strings(out)
	return out
}

// ErrNoBootstrap is returned by Command for a provided runtime whose code has
// no bootstrap. Its message is Lambda's Runtime.InvalidEntrypoint text, so the
// worker can show it as is.
//
//lint:ignore ST1005 Lambda's exact text, capital letter included.
var ErrNoBootstrap = errors.New("Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]")

// Paths of the installed bootstraps, relative to the runtime dir.
const (
	pythonBootstrap = "python/bootstrap.py"
	nodejsBootstrap = "nodejs/bootstrap.mjs"
)

// Interpreter lookups are cached for the life of the process: the host's
// PATH does not change under a running worker, and a LookPath per sandbox
// start would cost a directory walk on the cold path.
var (
	lookPython = sync.OnceValues(realPython)
	lookNode   = sync.OnceValues(func() (string, error) { return exec.LookPath("node") })
)

// Command returns the argv that starts the runtime for code unpacked in
// taskRoot, with Kiln's bootstraps installed (see Install) in runtimeDir.
func (rt Runtime) Command(taskRoot, runtimeDir string) ([]string, error) {
	switch rt.Family {
	case FamilyProvided:
		p := filepath.Join(taskRoot, "bootstrap")
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() {
			return nil, ErrNoBootstrap
		}
		return []string{p}, nil
	case FamilyPython:
		py, err := lookPython()
		if err != nil {
			return nil, fmt.Errorf("runtimes: %s needs python3 on the host: %w", rt.Name, err)
		}
		// -S: no site-packages of the host in the function's import path
		// (functions bring their dependencies in their zip), and a faster start.
		return []string{py, "-S", filepath.Join(runtimeDir, pythonBootstrap)}, nil
	case FamilyNodejs:
		node, err := lookNode()
		if err != nil {
			return nil, fmt.Errorf("runtimes: %s needs node on the host: %w", rt.Name, err)
		}
		return []string{node, filepath.Join(runtimeDir, nodejsBootstrap)}, nil
	}
	return nil, fmt.Errorf("runtimes: unknown runtime family %q", rt.Family)
}

// ExecutionEnv is the AWS_EXECUTION_ENV value, e.g. "AWS_Lambda_python3.12".
// Lambda does not set it for provided runtimes, so it is "" for them.
func (rt Runtime) ExecutionEnv() string {
	if rt.Family == FamilyProvided || rt.Name == "" {
		return ""
	}
	return "AWS_Lambda_" + rt.Name
}

// realPython finds the host's python3 and resolves it to the interpreter
// itself: version managers (pyenv) put a shell-script shim first on PATH that
// costs hundreds of milliseconds on every start.
func realPython() (string, error) {
	py, err := exec.LookPath("python3")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(py, "-S", "-c", "import sys; sys.stdout.write(sys.executable)").Output()
	if err != nil || len(out) == 0 || !filepath.IsAbs(string(out)) {
		return py, nil
	}
	return string(out), nil
}
