package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/worker"
)

func TestColdThenWarm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	info := e.create(t, e.goSpec())
	if info.ID == "" || info.WorkerID != "w-test" || info.Key != e.goSpec().Key || info.MemoryMB != 128 {
		t.Fatalf("SandboxInfo = %+v", info)
	}
	if info.InitDuration <= 0 {
		t.Fatalf("InitDuration = %v, want > 0", info.InitDuration)
	}

	var instance string
	var pid int
	for i, wantInit := range []bool{true, false, false} {
		r, resp := e.mustInvoke(t, info.ID, gofnEvent{Msg: fmt.Sprint("hi ", i)})
		if r.Msg != fmt.Sprint("hi ", i) {
			t.Fatalf("invoke %d: reply %+v", i, r)
		}
		if i == 0 {
			instance, pid = r.Instance, r.Pid
		} else if r.Instance != instance || r.Pid != pid {
			t.Fatalf("invoke %d ran in instance %s pid %d, want warm %s pid %d", i, r.Instance, r.Pid, instance, pid)
		}
		if resp.Retire || resp.Duration <= 0 {
			t.Fatalf("invoke %d: Retire=%v Duration=%v", i, resp.Retire, resp.Duration)
		}
		rep := reportLine(t, resp.LogTail)
		if got := strings.Contains(rep, "\tInit Duration: "); got != wantInit {
			t.Fatalf("invoke %d: REPORT has Init Duration = %v, want %v: %q", i, got, wantInit, rep)
		}
		for _, f := range []string{"\tDuration: ", " ms\tBilled Duration: ", "\tMemory Size: 128 MB\t", "\tMax Memory Used: "} {
			if !strings.Contains(rep, f) {
				t.Fatalf("REPORT %q lacks %q", rep, f)
			}
		}
	}
}

func TestPython(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	info := e.create(t, e.pySpec())
	for i := range 2 {
		resp, id, err := e.invoke(t, info.ID, gofnEvent{Msg: "snake"})
		if err != nil || resp.FunctionError != "" {
			t.Fatalf("invoke %d: %v %+v", i, err, resp)
		}
		want := `{"runtime": "python", "msg": "snake", "request_id": "` + id + `"`
		if !strings.HasPrefix(string(resp.Payload), want) {
			t.Fatalf("payload %s, want prefix %s", resp.Payload, want)
		}
		if !strings.Contains(string(resp.LogTail), "py saw snake\n") {
			t.Fatalf("log tail lacks the function's output:\n%s", resp.LogTail)
		}
	}
}

// TestInvokeOutcomes runs each way an invoke can fail in a fresh sandbox.
// Before the failing invoke the function starts a detached child, so a
// retired sandbox can be checked for leftover processes.
func TestInvokeOutcomes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		timeoutSec int
		ev         gofnEvent
		errorType  string // InvokeResponse.ErrorType
		body       func(id string) errorBody
		retire     bool
	}{
		{
			name:      "function error",
			ev:        gofnEvent{Action: "error", Msg: "kaput"},
			errorType: "errorString",
			body:      func(string) errorBody { return errorBody{"boom: kaput", "errorString"} },
		},
		{
			name:       "timeout",
			timeoutSec: 1,
			ev:         gofnEvent{Action: "sleep", Ms: 10000},
			errorType:  "Sandbox.Timedout",
			body: func(id string) errorBody {
				return errorBody{"RequestId: " + id + " Error: Task timed out after 1.00 seconds", "Sandbox.Timedout"}
			},
			retire: true,
		},
		{
			name:      "crash",
			ev:        gofnEvent{Action: "exit", N: 3},
			errorType: "Runtime.ExitError",
			body: func(id string) errorBody {
				return errorBody{"RequestId: " + id + " Error: Runtime exited with error: exit status 3", "Runtime.ExitError"}
			},
			retire: true,
		},
		{
			name: "out of memory",
			// 128 MB gets a few percent of a core: allow time to fill it.
			timeoutSec: 20,
			ev:         gofnEvent{Action: "alloc", N: 400},
			errorType:  "Runtime.OutOfMemory",
			body: func(id string) errorBody {
				return errorBody{"RequestId: " + id + " Error: Runtime exited with error: signal: killed", "Runtime.ExitError"}
			},
			retire: true,
		},
	}
	e := newEnv(t, 0)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := e.goSpec()
			if tc.timeoutSec > 0 {
				spec.TimeoutSec = tc.timeoutSec
			}
			info := e.create(t, spec)
			procs := e.spawnProcs(t, info.ID)

			start := time.Now()
			resp, id, err := e.invoke(t, info.ID, tc.ev)
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if resp.FunctionError != "Unhandled" || resp.ErrorType != tc.errorType || resp.Retire != tc.retire {
				t.Fatalf("got FunctionError=%q ErrorType=%q Retire=%v, want Unhandled %q %v (payload %s)",
					resp.FunctionError, resp.ErrorType, resp.Retire, tc.errorType, tc.retire, resp.Payload)
			}
			if got, want := decodeError(t, resp.Payload), tc.body(id); got != want {
				t.Fatalf("error payload = %+v, want %+v", got, want)
			}
			if tc.errorType == "Sandbox.Timedout" {
				if d := time.Since(start); d < time.Duration(tc.timeoutSec)*time.Second || d > time.Duration(tc.timeoutSec)*time.Second+3*time.Second {
					t.Fatalf("timed out after %v, want about %ds", d, tc.timeoutSec)
				}
			}
			rep := reportLine(t, resp.LogTail)
			if tc.retire {
				status := "Status: error\tError Type: " + tc.errorType
				if tc.errorType == "Sandbox.Timedout" {
					status = "Status: timeout"
				}
				if !strings.Contains(rep, status) {
					t.Fatalf("REPORT %q lacks %q", rep, status)
				}
			}

			if !tc.retire {
				// A handled function error leaves the sandbox warm.
				r, _ := e.mustInvoke(t, info.ID, gofnEvent{})
				if _, ok := procs[r.Pid]; !ok {
					t.Fatalf("after a function error the invoke ran in a new process %d", r.Pid)
				}
				return
			}
			waitGone(t, procs)
			if _, err := os.Stat(filepath.Join(e.dataDir, "sandboxes", info.ID)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("scratch dir of a retired sandbox: %v", err)
			}
			if _, _, err := e.invoke(t, info.ID, gofnEvent{}); !errors.Is(err, worker.ErrSandboxGone) {
				t.Fatalf("invoke on a retired sandbox: %v, want ErrSandboxGone", err)
			}
		})
	}
}

func TestInitFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	missing := e.pySpec()
	missing.Handler = "missing.handler"
	noBoot := e.goSpec()
	noBoot.CodeSha256Hex = e.noSha
	cases := []struct {
		name      string
		spec      worker.FunctionSpec
		errorType string
		message   func(id string) string
	}{
		{"python handler module missing", missing, "Runtime.ImportModuleError",
			func(string) string { return "Unable to import module 'missing': No module named 'missing'" }},
		{"provided without bootstrap", noBoot, "Runtime.InvalidEntrypoint",
			func(id string) string {
				return "RequestId: " + id + " Error: Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			info := e.create(t, tc.spec)
			if info.InitDuration != 0 {
				t.Fatalf("InitDuration = %v after a failed init, want 0", info.InitDuration)
			}
			resp, id, err := e.invoke(t, info.ID, gofnEvent{})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			if resp.FunctionError != "Unhandled" || resp.ErrorType != tc.errorType || !resp.Retire {
				t.Fatalf("got %q %q Retire=%v, want Unhandled %q true (payload %s)", resp.FunctionError, resp.ErrorType, resp.Retire, tc.errorType, resp.Payload)
			}
			got := decodeError(t, resp.Payload)
			if got.ErrorType != tc.errorType || got.ErrorMessage != tc.message(id) {
				t.Fatalf("payload = %+v, want %s %q", got, tc.errorType, tc.message(id))
			}
			if rep := reportLine(t, resp.LogTail); strings.Contains(rep, "Init Duration") || !strings.Contains(rep, "Status: error\tError Type: "+tc.errorType) {
				t.Fatalf("REPORT = %q", rep)
			}
			if _, _, err := e.invoke(t, info.ID, gofnEvent{}); !errors.Is(err, worker.ErrSandboxGone) {
				t.Fatalf("second invoke: %v, want ErrSandboxGone", err)
			}
		})
	}
}

// TestSandboxGoneAfterPanic: aws-lambda-go posts /error for a panic and then
// exits, so the invoke after it must not be blamed on the function.
func TestSandboxGoneAfterPanic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	info := e.create(t, e.goSpec())
	procs := e.spawnProcs(t, info.ID)
	resp, _, err := e.invoke(t, info.ID, gofnEvent{Action: "panic", Msg: "oops"})
	if err != nil {
		t.Fatalf("panic invoke: %v", err)
	}
	if resp.FunctionError != "Unhandled" {
		t.Fatalf("panic invoke: %+v", resp)
	}
	if body := decodeError(t, resp.Payload); body.ErrorMessage != "go panic: oops" {
		t.Fatalf("panic payload = %s", resp.Payload)
	}
	// The next invoke may race the exit; either way it must not run.
	resp, _, err = e.invoke(t, info.ID, gofnEvent{})
	if !errors.Is(err, worker.ErrSandboxGone) {
		t.Fatalf("invoke after the panic: resp=%+v err=%v, want ErrSandboxGone", resp, err)
	}
	waitGone(t, procs)
	if c, _ := e.w.Capacity(context.Background()); c.Sandboxes != 0 || c.UsedMemoryMB != 0 {
		t.Fatalf("capacity after the sandbox went: %+v", c)
	}
}

func TestLogCapture(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	info := e.create(t, e.goSpec())

	t.Run("order", func(t *testing.T) {
		resp, id, err := e.invoke(t, info.ID, gofnEvent{Action: "log", Msg: "hello", N: 5})
		if err != nil || resp.FunctionError != "" {
			t.Fatalf("invoke: %v %+v", err, resp)
		}
		want := []string{"START RequestId: " + id + " Version: $LATEST"}
		for i := range 5 {
			want = append(want, fmt.Sprintf("hello line %d", i))
		}
		want = append(want, "gofn saw log hello", "END RequestId: "+id)
		tail := strings.Split(strings.TrimSuffix(string(resp.LogTail), "\n"), "\n")
		if len(tail) != len(want)+1 || !strings.HasPrefix(tail[len(tail)-1], "REPORT RequestId: "+id+"\t") {
			t.Fatalf("log tail:\n%s", resp.LogTail)
		}
		for i, l := range want {
			if tail[i] != l {
				t.Fatalf("log tail line %d = %q, want %q\n%s", i, tail[i], l, resp.LogTail)
			}
		}
		// The sink sees the same lines in the same order.
		sink := e.logs.snapshot()
		i := indexOf(sink, want[0])
		if i < 0 || len(sink) < i+len(want)+1 {
			t.Fatalf("sink lacks the invocation:\n%s", strings.Join(sink, "\n"))
		}
		for j, l := range want {
			if sink[i+j] != l {
				t.Fatalf("sink line %d = %q, want %q", i+j, sink[i+j], l)
			}
		}
		if !strings.HasPrefix(sink[i+len(want)], "REPORT RequestId: "+id) {
			t.Fatalf("sink after END: %q", sink[i+len(want)])
		}
	})

	t.Run("tail is bounded", func(t *testing.T) {
		resp, id, err := e.invoke(t, info.ID, gofnEvent{Action: "log", Msg: strings.Repeat("x", 100), N: 200})
		if err != nil || resp.FunctionError != "" {
			t.Fatalf("invoke: %v %+v", err, resp)
		}
		if len(resp.LogTail) == 0 || len(resp.LogTail) > 4096 {
			t.Fatalf("LogTail is %d bytes, want 1..4096", len(resp.LogTail))
		}
		if !strings.Contains(string(resp.LogTail), "END RequestId: "+id+"\nREPORT RequestId: "+id) {
			t.Fatalf("tail does not end with END and REPORT:\n%s", resp.LogTail)
		}
		n := 0
		for _, l := range e.logs.snapshot() {
			if strings.HasPrefix(l, "xxxx") && strings.Contains(l, " line ") {
				n++
			}
		}
		if n != 200 {
			t.Fatalf("sink got %d of the 200 function lines", n)
		}
	})

	t.Run("no tail unless asked", func(t *testing.T) {
		resp, err := e.w.Invoke(testCtx(t), info.ID, &worker.InvokeRequest{RequestID: newRequestID(), Payload: []byte(`{}`)})
		if err != nil || resp.LogTail != nil {
			t.Fatalf("invoke: %v, LogTail %q", err, resp.LogTail)
		}
	})
}

func indexOf(lines []string, s string) int {
	for i, l := range lines {
		if l == s {
			return i
		}
	}
	return -1
}

func TestDestroySandbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1024)
	info := e.create(t, e.goSpec())
	procs := e.spawnProcs(t, info.ID)
	scratch := filepath.Join(e.dataDir, "sandboxes", info.ID)
	if _, err := os.Stat(scratch); err != nil {
		t.Fatalf("scratch dir: %v", err)
	}
	if err := e.w.DestroySandbox(testCtx(t), info.ID); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	// Everything is gone when DestroySandbox returns.
	for pid, start := range procs {
		if st, ok := processStart(pid); ok && st == start {
			t.Fatalf("process %d still runs after DestroySandbox", pid)
		}
	}
	if _, err := os.Stat(scratch); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("scratch dir after destroy: %v", err)
	}
	if _, _, err := e.invoke(t, info.ID, gofnEvent{}); !errors.Is(err, worker.ErrSandboxGone) {
		t.Fatalf("invoke after destroy: %v", err)
	}
	if err := e.w.DestroySandbox(testCtx(t), info.ID); err != nil {
		t.Fatalf("second DestroySandbox: %v", err)
	}
	if err := e.w.DestroySandbox(testCtx(t), "sb-no-such"); err != nil {
		t.Fatalf("DestroySandbox of an unknown id: %v", err)
	}
}

func TestCloseDestroysAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1024)
	all := map[int]string{}
	for range 3 {
		info := e.create(t, e.goSpec())
		for pid, st := range e.spawnProcs(t, info.ID) {
			all[pid] = st
		}
	}
	if err := e.w.Close(testCtx(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for pid, start := range all {
		if st, ok := processStart(pid); ok && st == start {
			t.Fatalf("process %d still runs after Close", pid)
		}
	}
	c, _ := e.w.Capacity(context.Background())
	if c.Sandboxes != 0 || c.UsedMemoryMB != 0 || c.Healthy {
		t.Fatalf("capacity after Close: %+v", c)
	}
	entries, err := os.ReadDir(filepath.Join(e.dataDir, "sandboxes"))
	if err != nil || len(entries) != 0 {
		t.Fatalf("scratch after Close: %v %v", entries, err)
	}
	if _, err := e.w.CreateSandbox(testCtx(t), e.goSpec()); err == nil {
		t.Fatal("CreateSandbox after Close succeeded")
	}
}

func TestCapacity(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2048)
	c, err := e.w.Capacity(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerID != "w-test" || c.MemoryMB != 2048 || c.UsedMemoryMB != 0 || c.Sandboxes != 0 || !c.Healthy || len(c.CachedCode) != 0 {
		t.Fatalf("fresh capacity: %+v", c)
	}
	small := e.goSpec()
	big := e.goSpec()
	big.MemoryMB = 256
	a := e.create(t, small)
	b := e.create(t, big)
	c, _ = e.w.Capacity(context.Background())
	if c.UsedMemoryMB != 384 || c.Sandboxes != 2 || !c.CachedCode[e.goSha] {
		t.Fatalf("capacity with two sandboxes: %+v", c)
	}
	if err := e.w.DestroySandbox(testCtx(t), b.ID); err != nil {
		t.Fatal(err)
	}
	c, _ = e.w.Capacity(context.Background())
	if c.UsedMemoryMB != 128 || c.Sandboxes != 1 {
		t.Fatalf("capacity after destroying one: %+v", c)
	}
	if err := e.w.DestroySandbox(testCtx(t), a.ID); err != nil {
		t.Fatal(err)
	}
	c, _ = e.w.Capacity(context.Background())
	if c.UsedMemoryMB != 0 || c.Sandboxes != 0 || !c.CachedCode[e.goSha] {
		t.Fatalf("capacity after destroying both (code stays cached): %+v", c)
	}
}

func TestCreateErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	unknownRuntime := e.goSpec()
	unknownRuntime.Runtime = "cobol85"
	badSha := e.goSpec()
	badSha.CodeSha256Hex = "../../etc"
	missingCode := e.goSpec()
	missingCode.CodeSha256Hex = strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name string
		spec worker.FunctionSpec
	}{
		{"unknown runtime", unknownRuntime},
		{"malformed code address", badSha},
		{"code not in the store", missingCode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := e.w.CreateSandbox(testCtx(t), tc.spec); err == nil {
				t.Fatal("CreateSandbox succeeded")
			}
			if c, _ := e.w.Capacity(context.Background()); c.Sandboxes != 0 || c.UsedMemoryMB != 0 || len(c.CachedCode) != 0 {
				t.Fatalf("capacity after a failed create: %+v", c)
			}
		})
	}
}

// TestConcurrentCreateUnpacksOnce: five cold starts of new code at once read
// and unpack it once.
func TestConcurrentCreateUnpacksOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	const n = 5
	ids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info, err := e.w.CreateSandbox(testCtx(t), e.goSpec())
			ids[i], errs[i] = info.ID, err
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateSandbox %d: %v", i, err)
		}
		seen[ids[i]] = true
	}
	if len(seen) != n {
		t.Fatalf("sandbox ids not distinct: %v", ids)
	}
	if got := e.code.readCount(e.goSha); got != 1 {
		t.Fatalf("code read %d times, want 1", got)
	}
	instances := map[string]bool{}
	for _, id := range ids {
		r, _ := e.mustInvoke(t, id, gofnEvent{})
		instances[r.Instance] = true
	}
	if len(instances) != n {
		t.Fatalf("%d distinct processes for %d sandboxes", len(instances), n)
	}
	entries, err := os.ReadDir(filepath.Join(e.dataDir, "code"))
	if err != nil || len(entries) != 1 || entries[0].Name() != e.goSha {
		t.Fatalf("code cache holds %v (%v), want one entry %s", entries, err, e.goSha)
	}
}
