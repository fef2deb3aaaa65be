package counting

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestClusterProcessesLeaderKilled runs three countnode processes (a Raft
// voter, counting replica and frontend each) on 127.0.0.1-3, hammers one
// function with reserved concurrency N through all three, SIGKILLs the
// leader mid-load, and checks on the "worker" (this test's HTTP server,
// which every admitted invoke calls while holding its token) that in-flight
// never exceeded N, and that admission resumed and went on through the new
// leader.
func TestClusterProcessesLeaderKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	const reserved = 5
	dir := t.TempDir()
	bin := filepath.Join(dir, "countnode")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/countnode").CombinedOutput(); err != nil {
		t.Fatalf("build countnode: %v\n%s", err, out)
	}

	var cur, peak atomic.Int64
	worker := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := cur.Add(1)
		for {
			p := peak.Load()
			if v <= p || peak.CompareAndSwap(p, v) {
				break
			}
		}
		time.Sleep(3 * time.Millisecond)
		cur.Add(-1)
	})}
	wl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = worker.Serve(wl) }()
	t.Cleanup(func() { _ = worker.Close() })

	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	ids := []string{"n1", "n2", "n3"}
	admit := make([]string, 3)
	var peerList []string
	for i, ip := range ips {
		admit[i] = freeAddr(t, ip)
		peerList = append(peerList, ids[i]+"="+freeAddr(t, ip)+"="+freeAddr(t, ip))
	}
	procs := make([]*exec.Cmd, 3)
	for i := range ids {
		cmd := exec.Command(bin, "-id", ids[i], "-dir", filepath.Join(dir, ids[i]), "-peers", strings.Join(peerList, ","),
			"-admit", admit[i], "-worker", "http://"+wl.Addr().String(), "-lease-ttl", "2s")
		cmd.Stderr = testLogWriter{t, ids[i]}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	client := &http.Client{Timeout: 3 * time.Second}
	state := func(i int) (int, bool, error) {
		resp, err := client.Get("http://" + admit[i] + "/state")
		if err != nil {
			return 0, false, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		f := strings.Fields(string(b))
		if len(f) != 2 {
			return 0, false, fmt.Errorf("state %q", b)
		}
		n, _ := strconv.Atoi(f[0])
		return n, f[1] == "yes", nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := range ids {
		for {
			if _, _, err := state(i); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s never came up", ids[i])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	resp, err := client.Post("http://"+admit[2]+"/reserve?n="+strconv.Itoa(reserved), "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("reserve: %v %v", err, resp)
	}
	resp.Body.Close()
	for i := range ids {
		for {
			if n, _, _ := state(i); n == reserved {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("reservation never replicated to %s", ids[i])
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	var admitted, throttled atomic.Int64
	lastOK := make([]atomic.Int64, 3)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &http.Client{Timeout: 3 * time.Second}
				for {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := c.Post("http://"+admit[i]+"/invoke", "", nil)
					if err != nil {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						admitted.Add(1)
						lastOK[i].Store(time.Now().UnixNano())
					} else {
						throttled.Add(1)
					}
				}
			}()
		}
	}
	time.Sleep(1500 * time.Millisecond)
	leader := -1
	for i := range ids {
		if _, lead, _ := state(i); lead {
			leader = i
		}
	}
	if leader < 0 {
		close(stop)
		wg.Wait()
		t.Fatal("no leader")
	}
	_ = procs[leader].Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	t.Logf("SIGKILLed leader %s after %d admissions", ids[leader], admitted.Load())

	var resumed time.Duration
	for resumed == 0 && time.Since(killed) < 8*time.Second {
		for i := range ids {
			if i != leader && lastOK[i].Load() > killed.UnixNano() {
				resumed = time.Since(killed)
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(3500 * time.Millisecond) // past every lease the old leader committed
	close(stop)
	wg.Wait()
	var late time.Duration
	for i := range ids {
		if i != leader {
			late = max(late, time.Duration(lastOK[i].Load()-killed.UnixNano()))
		}
	}
	t.Logf("admitted %d, throttled %d; max in flight on the worker %d (reserved %d); admission resumed %v after the kill; last admission %v after",
		admitted.Load(), throttled.Load(), peak.Load(), reserved, resumed, late)
	if peak.Load() > reserved {
		t.Fatalf("max in flight %d > reserved %d", peak.Load(), reserved)
	}
	if resumed == 0 || resumed > 5*time.Second {
		t.Fatalf("admission did not resume within 5 s")
	}
	if late < 3*time.Second {
		t.Fatalf("admission stopped %v after the kill: leases were not renewed through the new leader", late)
	}
}

type testLogWriter struct {
	t  *testing.T
	id string
}

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(w.id + ": " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
