package controlplane

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGKILLDurability: a process that has answered "created" is killed
// with SIGKILL (no Close, no flush); a new process finds everything it said
// yes to, code included.
func TestSIGKILLDurability(t *testing.T) {
	if dir := os.Getenv("KILN_CP_CHILD_DIR"); dir != "" {
		sigkillChild(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSIGKILLDurability$", "-test.v")
	cmd.Env = append(os.Environ(), "KILN_CP_CHILD_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var akid string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			akid = k
			break
		}
	}
	if akid == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal("child never became ready")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	e := newEnv(t, dir)
	defer e.Close()
	ctx := context.Background()
	if _, id, err := e.svc.LookupKey(ctx, akid); err != nil || id == "" {
		t.Fatalf("account lost after SIGKILL: %v", err)
	}
	for _, q := range []string{"", "1", "live"} {
		r, err := e.svc.Resolve(ctx, acctA, "killed", q, 0)
		if err != nil {
			t.Fatalf("fn:%s lost after SIGKILL: %v", q, err)
		}
		if _, err := os.Stat(e.svc.CodePath(r.Version.CodeSha256Hex)); err != nil {
			t.Fatalf("code of fn:%s lost: %v", q, err)
		}
	}
}

func sigkillChild(t *testing.T, dir string) {
	e := newEnv(t, dir)
	steps := []struct {
		method, path string
		body         any
	}{
		{"POST", "/2015-03-31/functions", createBody(t, "killed")},
		{"POST", "/2015-03-31/functions/killed/versions", nil},
		{"POST", "/2015-03-31/functions/killed/aliases", map[string]any{"Name": "live", "FunctionVersion": "1"}},
		{"PUT", "/2015-03-31/functions/killed/code", map[string]any{"ZipFile": pyZip(t, "after")}},
	}
	for _, s := range steps {
		if w := e.do(acctA, s.method, s.path, s.body); w.Code >= 300 {
			t.Fatalf("%s %s: %d %s", s.method, s.path, w.Code, w.Body)
		}
	}
	a, err := e.svc.CreateAccount(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %s\n", a.AccessKeyID)
	time.Sleep(time.Minute) // killed before this ends
}
