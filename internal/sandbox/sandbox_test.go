package sandbox

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestSpecValidate(t *testing.T) {
	good := Spec{ID: "fn-1_A", Argv: []string{"/var/runtime/bootstrap"}, Env: []string{"A=b", "EMPTY="}, Dir: "/var/task", TmpDir: "/srv/kiln/sb/tmp"}
	tests := []struct {
		name string
		mod  func(*Spec)
		ok   bool
	}{
		{"good", func(*Spec) {}, true},
		{"no-dir-no-tmp", func(s *Spec) { s.Dir, s.TmpDir = "", "" }, true},
		{"empty-id", func(s *Spec) { s.ID = "" }, false},
		{"long-id", func(s *Spec) { s.ID = strings.Repeat("a", MaxIDLen+1) }, false},
		{"max-id", func(s *Spec) { s.ID = strings.Repeat("a", MaxIDLen) }, true},
		{"slash-id", func(s *Spec) { s.ID = "a/b" }, false},
		{"dot-id", func(s *Spec) { s.ID = "a.b" }, false},
		{"no-argv", func(s *Spec) { s.Argv = nil }, false},
		{"relative-argv0", func(s *Spec) { s.Argv = []string{"bootstrap"} }, false},
		{"nul-argv", func(s *Spec) { s.Argv = []string{"/bin/sh", "a\x00b"} }, false},
		{"env-no-equals", func(s *Spec) { s.Env = []string{"A"} }, false},
		{"env-empty-key", func(s *Spec) { s.Env = []string{"=x"} }, false},
		{"env-nul", func(s *Spec) { s.Env = []string{"A=\x00"} }, false},
		{"relative-dir", func(s *Spec) { s.Dir = "task" }, false},
		{"relative-tmp", func(s *Spec) { s.TmpDir = "tmp" }, false},
		{"root-tmp", func(s *Spec) { s.TmpDir = "/" }, false},
		{"unclean-tmp", func(s *Spec) { s.TmpDir = "/srv/../etc" }, false},
		{"negative-memory", func(s *Spec) { s.MemoryBytes = -1 }, false},
		{"negative-cpu", func(s *Spec) { s.CPUWeightMB = -1 }, false},
		{"negative-pids", func(s *Spec) { s.PidsMax = -1 }, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := good
			s.Argv = append([]string(nil), good.Argv...)
			tc.mod(&s)
			err := s.Validate()
			if tc.ok && err != nil {
				t.Errorf("Validate = %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("Validate = %v, want ErrInvalidSpec", err)
			}
		})
	}
}

func TestExitStatusString(t *testing.T) {
	tests := []struct {
		st      ExitStatus
		want    string
		success bool
	}{
		{ExitStatus{}, "exit status 0", true},
		{ExitStatus{Code: 2}, "exit status 2", false},
		{ExitStatus{Code: -1, Signal: syscall.SIGKILL}, "signal: killed", false},
		{ExitStatus{Code: -1, Signal: syscall.SIGKILL, OOMKilled: true}, "signal: killed", false},
		{ExitStatus{Code: -1, Signal: syscall.SIGSEGV}, "signal: segmentation fault", false},
		{ExitStatus{Code: -1, Err: errors.New("no child")}, "wait: no child", false},
	}
	for _, tc := range tests {
		if got := tc.st.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.st, got, tc.want)
		}
		if got := tc.st.Success(); got != tc.success {
			t.Errorf("%+v.Success() = %v", tc.st, got)
		}
	}
}

type plainBackend struct{}

func (plainBackend) Name() string                                  { return "plain" }
func (plainBackend) Create(context.Context, Spec) (Sandbox, error) { return nil, nil }
func (plainBackend) Close() error                                  { return nil }

type degradedBackend struct{ plainBackend }

func (degradedBackend) Capabilities() Capabilities { return Capabilities{KillDetached: true} }

func TestCapabilitiesOf(t *testing.T) {
	if got := CapabilitiesOf(plainBackend{}); got != FullCapabilities {
		t.Errorf("backend without reporter: %+v, want full", got)
	}
	if got := CapabilitiesOf(degradedBackend{}); got != (Capabilities{KillDetached: true}) {
		t.Errorf("degraded: %+v", got)
	}
}
