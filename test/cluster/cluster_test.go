package cluster

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/test/kilnproc"
)

func TestMain(m *testing.M) { os.Exit(kilnproc.RunTests(m)) }

const testRole = "arn:aws:iam::123456789012:role/kiln-test"

// node is one cluster member as the test knows it.
type node struct {
	id, http, raft, dir string
	proc                *kilnproc.Server
	lambda              *lambda.Client
}

func freeAddr(t testing.TB, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func fnZip(t testing.TB, extra string) []byte {
	t.Helper()
	src, err := os.ReadFile("testdata/fn/app.py")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range map[string][]byte{"app.py": src, "extra.txt": []byte(extra)} {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = w.Write(body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// signed sends a request to an internal route signed with key (nil: not
// signed) at time at.
func signed(t *testing.T, key []byte, at time.Time, method, url string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != nil {
		consensus.SignRequest(req, key, body, at)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func status(key []byte, addr string) (consensus.Status, error) {
	var st consensus.Status
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+consensus.InternalPrefix+"status", nil)
	consensus.SignRequest(req, key, nil, time.Now())
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

type interval struct {
	start, end int64
	node       int
}

type fnReply struct {
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Tag   string `json:"tag"`
}

// maxOverlap is the largest number of intervals open at one instant.
func maxOverlap(iv []interval) int {
	type ev struct {
		t int64
		d int
	}
	evs := make([]ev, 0, 2*len(iv))
	for _, x := range iv {
		evs = append(evs, ev{x.start, 1}, ev{x.end, -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].d < evs[j].d // an end before a start at the same instant
	})
	cur, peak := 0, 0
	for _, e := range evs {
		cur += e.d
		peak = max(peak, cur)
	}
	return peak
}

func invokeFn(ctx context.Context, c *lambda.Client, name string, payload any) (fnReply, error) {
	b, _ := json.Marshal(payload)
	out, err := c.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String(name), Payload: b})
	if err != nil {
		return fnReply{}, err
	}
	if out.FunctionError != nil {
		return fnReply{}, errors.New("function error: " + string(out.Payload))
	}
	var r fnReply
	err = json.Unmarshal(out.Payload, &r)
	return r, err
}

// waitFunction polls GetFunction on c until the function is there.
func waitFunction(t *testing.T, c *lambda.Client, name string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, err := c.GetFunction(context.Background(), &lambda.GetFunctionInput{FunctionName: aws.String(name)})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("function %s not visible: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startCluster launches three nodes on 127.0.0.1-3 with a fresh cluster
// key (written to keyFile) and waits until all serve.
func startCluster(t testing.TB, extra ...string) (nodes []*node, key []byte, keyFile string) {
	key = make([]byte, consensus.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "cluster.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes = make([]*node, 3)
	var peers []string
	for i := range nodes {
		ip := "127.0.0." + string(rune('1'+i))
		n := &node{id: "n" + string(rune('1'+i)), http: freeAddr(t, ip), raft: freeAddr(t, ip), dir: t.TempDir()}
		nodes[i] = n
		peers = append(peers, n.id+"="+n.raft+"@"+n.http)
	}
	for _, n := range nodes {
		args := append([]string{"--listen", n.http, "--node-id", n.id, "--raft-addr", n.raft,
			"--peers", strings.Join(peers, ","), "--cluster-key-file", keyFile, "--sandbox-egress=false"}, extra...)
		n.proc = kilnproc.Launch(t, n.dir, args...)
	}
	for _, n := range nodes {
		n.proc.WaitReady(t)
	}
	return nodes, key, keyFile
}

// TestThreeNodeCluster runs three `kiln server` processes as one cluster.
func TestThreeNodeCluster(t *testing.T) {
	const reserved = 3
	t0 := time.Now()
	nodes, key, keyFile := startCluster(t, "--counting-lease-ttl", "2s")
	t.Logf("3 nodes up in %v", time.Since(t0).Round(time.Millisecond))
	admin := nodes[0].proc.AccessKeyID
	for _, n := range nodes[1:] {
		if n.proc.AccessKeyID != admin {
			t.Fatalf("nodes disagree on the admin account: %s vs %s", n.proc.AccessKeyID, admin)
		}
	}

	ctx := context.Background()
	t.Run("internal routes need the cluster key", func(t *testing.T) {
		url := "http://" + nodes[0].http + consensus.InternalPrefix
		wrong := make([]byte, consensus.KeySize)
		cases := []struct {
			name string
			key  []byte
			at   time.Time
			want int
		}{
			{"unsigned", nil, time.Now(), http.StatusForbidden},
			{"wrong key", wrong, time.Now(), http.StatusForbidden},
			{"stale", key, time.Now().Add(-5 * time.Minute), http.StatusForbidden},
		}
		for _, c := range cases {
			if got := signed(t, c.key, c.at, http.MethodPost, url+"apply", []byte("\x01\x02kv")); got != c.want {
				t.Errorf("%s: status %d, want %d", c.name, got, c.want)
			}
			if got := signed(t, c.key, c.at, http.MethodGet, url+"code/"+strings.Repeat("0", 64), nil); got != c.want {
				t.Errorf("%s code fetch: status %d, want %d", c.name, got, c.want)
			}
		}
		if got := signed(t, key, time.Now(), http.MethodGet, url+"status", nil); got != http.StatusOK {
			t.Errorf("signed status: %d, want 200", got)
		}
		// The admin's SigV4 credentials open nothing here.
		req, _ := http.NewRequest(http.MethodGet, url+"status", nil)
		sum := sha256.Sum256(nil)
		creds := aws.Credentials{AccessKeyID: nodes[0].proc.AccessKeyID, SecretAccessKey: nodes[0].proc.SecretAccessKey}
		if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "lambda", "us-east-1", time.Now()); err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("SigV4-signed internal request: %d, want 403", resp.StatusCode)
		}
	})

	// An account and a function, created through node 2.
	akid, secret := nodes[1].proc.NewAccount(t)
	for _, n := range nodes {
		n.lambda = n.proc.ClientFor(akid, secret)
	}
	create := func(c *lambda.Client, name, extra string) {
		t.Helper()
		_, err := c.CreateFunction(ctx, &lambda.CreateFunctionInput{
			FunctionName: aws.String(name),
			Runtime:      types.RuntimePython312,
			Handler:      aws.String("app.handler"),
			Role:         aws.String(testRole),
			Code:         &types.FunctionCode{ZipFile: fnZip(t, extra)},
			Timeout:      aws.Int32(10),
		})
		if err != nil {
			t.Fatalf("CreateFunction %s: %v", name, err)
		}
	}
	create(nodes[1].lambda, "probe", "v1")
	// Read-your-writes on the node that accepted the write.
	if _, err := nodes[1].lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("probe")}); err != nil {
		t.Fatalf("GetFunction right after CreateFunction on the same node: %v", err)
	}
	for _, n := range nodes {
		waitFunction(t, n.lambda, "probe", 5*time.Second)
		if _, err := invokeFn(ctx, n.lambda, "probe", map[string]any{"tag": n.id}); err != nil {
			t.Fatalf("invoke on %s: %v", n.id, err)
		}
	}
	if _, err := nodes[2].lambda.PutFunctionConcurrency(ctx, &lambda.PutFunctionConcurrencyInput{
		FunctionName: aws.String("probe"), ReservedConcurrentExecutions: aws.Int32(reserved),
	}); err != nil {
		t.Fatalf("PutFunctionConcurrency: %v", err)
	}
	// Admission reads the reservation from each node's replica; an invoke a
	// lagging node admitted before it saw the reservation would count
	// against the account, not the function.
	for _, n := range nodes {
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, err := n.lambda.GetFunctionConcurrency(ctx, &lambda.GetFunctionConcurrencyInput{FunctionName: aws.String("probe")})
			if err == nil && aws.ToInt32(out.ReservedConcurrentExecutions) == reserved {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never saw the reservation: %v", n.id, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Hammer from all three nodes, kill the leader mid-load.
	var mu sync.Mutex
	var intervals []interval
	var throttled, failed atomic.Int64
	lastOK := make([]atomic.Int64, 3)
	var firstAfterKill atomic.Int64 // client end time of the first survivor success started after the kill
	var killedAt atomic.Int64
	var leaderIdx atomic.Int64
	leaderIdx.Store(-1)
	var survivorFailed atomic.Int64 // failures other than on the killed node after the kill
	var lastErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range nodes {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					began := time.Now()
					cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					r, err := invokeFn(cctx, n.lambda, "probe", map[string]any{"ms": 30})
					cancel()
					var te *types.TooManyRequestsException
					switch {
					case err == nil:
						now := time.Now()
						mu.Lock()
						intervals = append(intervals, interval{r.Start, r.End, i})
						mu.Unlock()
						lastOK[i].Store(now.UnixNano())
						if k := killedAt.Load(); k != 0 && began.UnixNano() > k {
							firstAfterKill.CompareAndSwap(0, now.UnixNano())
						}
					case errors.As(err, &te):
						throttled.Add(1)
						time.Sleep(2 * time.Millisecond)
					default:
						failed.Add(1)
						if k := killedAt.Load(); k == 0 || int64(i) != leaderIdx.Load() {
							survivorFailed.Add(1)
							lastErr.Store(err.Error())
						}
						time.Sleep(10 * time.Millisecond)
					}
				}
			}()
		}
	}
	time.Sleep(2 * time.Second)
	leader := -1
	for i, n := range nodes {
		if st, err := status(key, n.http); err == nil && st.State == "Leader" {
			leader = i
		}
	}
	if leader < 0 {
		close(stop)
		wg.Wait()
		t.Fatal("no leader")
	}
	mu.Lock()
	before := len(intervals)
	mu.Unlock()
	leaderIdx.Store(int64(leader))
	killedAt.Store(time.Now().UnixNano())
	nodes[leader].proc.Kill()
	killed := time.Unix(0, killedAt.Load())
	t.Logf("SIGKILLed leader %s after %d invokes", nodes[leader].id, before)
	time.Sleep(4 * time.Second) // past every lease the dead node held (TTL 2 s)
	close(stop)
	wg.Wait()

	mu.Lock()
	peak := maxOverlap(intervals)
	total := len(intervals)
	mu.Unlock()
	resumed := time.Duration(0)
	if f := firstAfterKill.Load(); f != 0 {
		resumed = time.Unix(0, f).Sub(killed)
	}
	var late time.Duration
	for i := range nodes {
		if i != leader {
			late = max(late, time.Duration(lastOK[i].Load()-killedAt.Load()))
		}
	}
	t.Logf("invokes ok %d, throttled %d, failed %d; max in flight %d (reserved %d); admission resumed %v after the kill, last success %v after",
		total, throttled.Load(), failed.Load(), peak, reserved, resumed, late)
	if n := survivorFailed.Load(); n > 0 {
		t.Logf("%d invokes failed other than on the killed node; last: %v", n, lastErr.Load())
	}
	if peak > reserved {
		t.Errorf("max in flight %d > reserved concurrency %d", peak, reserved)
		mu.Lock()
		sort.Slice(intervals, func(a, b int) bool { return intervals[a].start < intervals[b].start })
		for _, x := range intervals {
			t.Logf("node %s: %+.3fs .. %+.3fs (%v)", nodes[x.node].id, time.Duration(x.start-killedAt.Load()).Seconds(),
				time.Duration(x.end-killedAt.Load()).Seconds(), time.Duration(x.end-x.start).Round(time.Millisecond))
		}
		mu.Unlock()
	}
	if peak < 2 || throttled.Load() == 0 {
		t.Errorf("the load never pressed the limit (peak %d, %d throttles): the check proves nothing", peak, throttled.Load())
	}
	if resumed <= 0 || resumed > 5*time.Second {
		t.Errorf("admission did not resume on the survivors within 5 s (resumed %v)", resumed)
	}
	if late < 3*time.Second {
		t.Errorf("survivors stopped admitting %v after the kill", late)
	}

	// While the old leader is down: a new function, with code it has never seen.
	survivor := nodes[(leader+1)%3]
	create(survivor.lambda, "late", "v2")
	if _, err := invokeFn(ctx, survivor.lambda, "late", map[string]any{"tag": "survivor"}); err != nil {
		t.Fatalf("invoke late on %s: %v", survivor.id, err)
	}

	// Restart it with only --data-dir: it catches up.
	down := nodes[leader]
	t1 := time.Now()
	down.proc = kilnproc.Restart(t, down.dir, "--sandbox-egress=false")
	if down.proc.Endpoint != "http://"+down.http {
		t.Errorf("restarted on %s, want its stored address %s", down.proc.Endpoint, down.http)
	}
	down.lambda = down.proc.ClientFor(akid, secret)
	waitFunction(t, down.lambda, "late", 10*time.Second)
	r, err := invokeFn(ctx, down.lambda, "late", map[string]any{"tag": "restarted"})
	if err != nil || r.Tag != "restarted" {
		t.Fatalf("invoke late on the restarted %s: %+v %v", down.id, r, err)
	}
	t.Logf("restarted %s caught up and invoked in %v", down.id, time.Since(t1).Round(time.Millisecond))
	out, err := down.lambda.GetFunction(ctx, &lambda.GetFunctionInput{FunctionName: aws.String("late")})
	if err != nil {
		t.Fatal(err)
	}
	sum, _ := base64.StdEncoding.DecodeString(aws.ToString(out.Configuration.CodeSha256))
	if _, err := os.Stat(filepath.Join(down.dir, "code", hex.EncodeToString(sum)+".zip")); err != nil {
		t.Errorf("the restarted node did not keep the code it fetched: %v", err)
	}

	// A fourth voter joins through any member.
	t2 := time.Now()
	n4 := &node{id: "n4", http: freeAddr(t, "127.0.0.1"), raft: freeAddr(t, "127.0.0.1"), dir: t.TempDir()}
	n4.proc = kilnproc.Start(t, n4.dir, "--listen", n4.http, "--node-id", n4.id, "--raft-addr", n4.raft,
		"--join", survivor.http, "--cluster-key-file", keyFile, "--sandbox-egress=false")
	n4.lambda = n4.proc.ClientFor(akid, secret)
	waitFunction(t, n4.lambda, "late", 5*time.Second)
	if _, err := invokeFn(ctx, n4.lambda, "late", map[string]any{"tag": "n4"}); err != nil {
		t.Fatalf("invoke on the joined node: %v", err)
	}
	st, err := status(key, n4.http)
	if err != nil || st.Leader == "" {
		t.Fatalf("joined node status %+v %v", st, err)
	}
	t.Logf("n4 joined and invoked in %v", time.Since(t2).Round(time.Millisecond))
}
