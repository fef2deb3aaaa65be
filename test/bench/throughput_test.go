package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

// processCPU returns the user+system CPU time a process has used so far
// (from /proc/<pid>/stat, in clock ticks of 10 ms).
func processCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

var listenRE = regexp.MustCompile(`serving the AWS Lambda API on (http://[0-9.:]+)`)

// BenchmarkWarmThroughputPerServerCore runs kiln server as its own process
// and charges only that process's CPU (frontend, worker manager, worker,
// Runtime API — everything but the client and the function's own process).
func BenchmarkWarmThroughputPerServerCore(b *testing.B) {
	dir := b.TempDir()
	bin := filepath.Join(dir, "kiln")
	build := exec.Command("go", "build", "-o", bin, "../../cmd/kiln")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	var endpoint string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
			endpoint = m[1]
			break
		}
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if endpoint == "" {
		b.Fatal("server did not start")
	}
	creds := readCreds(b, filepath.Join(dir, "data", "credentials"))
	c := lambda.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.StaticCredentialsProvider{Value: creds}},
		func(o *lambda.Options) { o.BaseEndpoint = aws.String(endpoint) })
	deploy(b, c, "echo", "provided.al2023", "bootstrap", filepath.Dir(buildGoFunction(b, b.TempDir())))
	mk := signedInvoke(b, endpoint, "echo", creds)
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	for i := 0; i < 300; i++ {
		roundTrip(b, hc, mk())
	}

	const clients = 8
	dur := 3 * time.Second
	var count atomic.Int64
	cpu0 := processCPU(b, cmd.Process.Pid)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(t0) < dur {
				roundTrip(b, hc, mk())
				count.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	cpu := processCPU(b, cmd.Process.Pid) - cpu0
	rate := float64(count.Load()) / elapsed.Seconds()
	perCore := float64(count.Load()) / cpu.Seconds()
	fmt.Printf("warm invoke throughput, kiln server as its own process (%d clients): %.0f invokes/s; server CPU %.2f cores; %.0f invokes per server CPU-second\n",
		clients, rate, cpu.Seconds()/elapsed.Seconds(), perCore)
	b.ReportMetric(rate, "invokes/s")
	b.ReportMetric(perCore, "invokes/server-cpu-s")
}

func readCreds(tb testing.TB, path string) aws.Credentials {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var c aws.Credentials
	for _, l := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			c.AccessKeyID = strings.TrimSpace(v)
		case "aws_secret_access_key":
			c.SecretAccessKey = strings.TrimSpace(v)
		}
	}
	return c
}
