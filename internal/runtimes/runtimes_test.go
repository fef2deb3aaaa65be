package runtimes

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		name   string
		ok     bool
		family string
		env    string
	}{
		{"provided", true, FamilyProvided, ""},
		{"provided.al2", true, FamilyProvided, ""},
		{"provided.al2023", true, FamilyProvided, ""},
		{"python3.9", true, FamilyPython, "AWS_Lambda_python3.9"},
		{"python3.10", true, FamilyPython, "AWS_Lambda_python3.10"},
		{"python3.11", true, FamilyPython, "AWS_Lambda_python3.11"},
		{"python3.12", true, FamilyPython, "AWS_Lambda_python3.12"},
		{"python3.13", true, FamilyPython, "AWS_Lambda_python3.13"},
		{"nodejs18.x", true, FamilyNodejs, "AWS_Lambda_nodejs18.x"},
		{"nodejs20.x", true, FamilyNodejs, "AWS_Lambda_nodejs20.x"},
		{"nodejs22.x", true, FamilyNodejs, "AWS_Lambda_nodejs22.x"},
		{"python3.8", false, "", ""},
		{"go1.x", false, "", ""},
		{"java21", false, "", ""},
		{"", false, "", ""},
		{"Python3.12", false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, ok := Lookup(tt.name)
			if ok != tt.ok {
				t.Fatalf("Lookup(%q) ok = %v, want %v", tt.name, ok, tt.ok)
			}
			if !ok {
				return
			}
			if rt.Name != tt.name || rt.Family != tt.family {
				t.Errorf("Lookup(%q) = %+v", tt.name, rt)
			}
			if got := rt.ExecutionEnv(); got != tt.env {
				t.Errorf("ExecutionEnv() = %q, want %q", got, tt.env)
			}
		})
	}
}

func TestNames(t *testing.T) {
	names := Names()
	if !slices.IsSorted(names) {
		t.Errorf("Names() not sorted: %v", names)
	}
	if len(names) != 11 {
		t.Errorf("Names() has %d entries: %v", len(names), names)
	}
	for _, n := range names {
		if _, ok := Lookup(n); !ok {
			t.Errorf("Names() lists %q, which Lookup rejects", n)
		}
	}
	names[0] = "mutated"
	if Names()[0] == "mutated" {
		t.Error("Names() shares its backing array with the package")
	}
}

func TestCommand(t *testing.T) {
	withBootstrap := t.TempDir()
	if err := os.WriteFile(filepath.Join(withBootstrap, "bootstrap"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	bootstrapIsDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(bootstrapIsDir, "bootstrap"), 0o755); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	rtDir := "/srv/kiln/runtime"
	py, pyErr := realPython()
	node, nodeErr := exec.LookPath("node")

	tests := []struct {
		runtime  string
		taskRoot string
		want     []string
		wantErr  error
		needs    error
	}{
		{"provided.al2023", withBootstrap, []string{filepath.Join(withBootstrap, "bootstrap")}, nil, nil},
		{"provided", withBootstrap, []string{filepath.Join(withBootstrap, "bootstrap")}, nil, nil},
		{"provided.al2", empty, nil, ErrNoBootstrap, nil},
		{"provided.al2", bootstrapIsDir, nil, ErrNoBootstrap, nil},
		{"python3.12", empty, []string{py, "-S", rtDir + "/python/bootstrap.py"}, nil, pyErr},
		{"python3.9", empty, []string{py, "-S", rtDir + "/python/bootstrap.py"}, nil, pyErr},
		{"nodejs20.x", empty, []string{node, rtDir + "/nodejs/bootstrap.mjs"}, nil, nodeErr},
	}
	for _, tt := range tests {
		t.Run(tt.runtime, func(t *testing.T) {
			if tt.needs != nil {
				t.Skipf("interpreter missing: %v", tt.needs)
			}
			rt, _ := Lookup(tt.runtime)
			got, err := rt.Command(tt.taskRoot, rtDir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Command() err = %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Command() = %q, want %q", got, tt.want)
			}
		})
	}
	if got := ErrNoBootstrap.Error(); got != "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]" {
		t.Errorf("ErrNoBootstrap = %q", got)
	}
}

func TestInstall(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runtime")
	// Concurrent installs (two workers sharing a data dir) must not tear files.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = Install(dir)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"python/bootstrap.py", "nodejs/bootstrap.mjs"} {
		want, err := bootstraps.ReadFile("bootstrap/" + f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("%s differs from the embedded copy", f)
		}
		fi, _ := os.Stat(filepath.Join(dir, f))
		if fi.Mode().Perm() != 0o644 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
	}
	// A damaged file is repaired; an intact one is left alone (same inode).
	py := filepath.Join(dir, "python/bootstrap.py")
	if err := os.WriteFile(py, []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "nodejs/bootstrap.mjs")
	before, _ := os.Stat(node)
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(py); string(b) == "broken" {
		t.Error("Install did not repair a changed file")
	}
	after, _ := os.Stat(node)
	if !os.SameFile(before, after) {
		t.Error("Install rewrote an unchanged file")
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "python"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".install-") {
			t.Errorf("temporary file left behind: %s", e.Name())
		}
	}
}

// The bootstraps must at least parse on the host's interpreters; the
// end-to-end tests in package runtimeapi run them for real.
func TestBootstrapsCompile(t *testing.T) {
	dir := t.TempDir()
	if err := Install(dir); err != nil {
		t.Fatal(err)
	}
	if py, err := exec.LookPath("python3"); err == nil {
		cmd := exec.Command(py, "-c", "import ast,sys; ast.parse(open(sys.argv[1]).read())", filepath.Join(dir, "python/bootstrap.py"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("python bootstrap: %v\n%s", err, out)
		}
	}
	if node, err := exec.LookPath("node"); err == nil {
		if out, err := exec.Command(node, "--check", filepath.Join(dir, "nodejs/bootstrap.mjs")).CombinedOutput(); err != nil {
			t.Errorf("node bootstrap: %v\n%s", err, out)
		}
	}
}

func TestRealPythonIsNotAShim(t *testing.T) {
	py, err := realPython()
	if err != nil {
		t.Skipf("no python3: %v", err)
	}
	b, err := os.ReadFile(py)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 2 && string(b[:2]) == "#!" {
		t.Errorf("%s is a script, not the interpreter", py)
	}
}
