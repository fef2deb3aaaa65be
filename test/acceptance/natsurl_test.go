package acceptance

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATS runs a standalone NATS server with JetStream in the test
// process, on 127.0.0.1, and returns its client URL.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		ServerName: "ext-nats",
		Host:       "127.0.0.1",
		Port:       natsserver.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: 8 * 1024 * 1024, // Kiln's events may be up to 1 MB plus envelope
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("external nats server did not start")
	}
	return ns.ClientURL()
}

// jsStreams lists the stream names in the external server and the number of
// messages held in Kiln's event partition streams.
func jsStreams(t *testing.T, js jetstream.JetStream) (names []string, events uint64) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx(), 5*time.Second)
	defer cancel()
	l := js.ListStreams(c)
	for info := range l.Info() {
		names = append(names, info.Config.Name)
		if strings.HasPrefix(info.Config.Name, "KILN_EVENTS_") {
			events += info.State.Msgs
		}
	}
	if err := l.Err(); err != nil {
		t.Fatalf("list streams: %v", err)
	}
	slices.Sort(names)
	return names, events
}

// TestNATSURL runs kiln server against an external NATS JetStream server
// (--nats-url): Event invokes are accepted and run, Kiln's streams live in
// the external server, and events accepted before a SIGKILL still run after
// a restart on the same data dir and NATS.
func TestNATSURL(t *testing.T) {
	url := startNATS(t)
	nc, err := nats.Connect(url, nats.Name("kiln-test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	args := []string{"--nats-url", url, "--async-retry-scale", "0.01", "--async-lease", "2s"}
	s := startServer(t, dir, args...)
	c := s.client(t)
	createFunction(t, c, "natsfn", python())
	doneArn := s.createQueue(t, "natsdone")
	setDestinations(t, c, "natsfn", 2, doneArn, doneArn)
	account := strings.Split(doneArn, ":")[4]

	// An Event invoke is accepted and runs.
	firstID, err := invokeEvent(t, c, "natsfn", []byte(`{"action":"echo","first":true}`))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	var first []asyncRecord
	for len(first) == 0 && time.Now().Before(deadline) {
		first = s.receive(t, "natsdone")
		if len(first) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(first) != 1 || first[0].RequestContext.RequestID != firstID || first[0].RequestContext.Condition != "Success" {
		t.Fatalf("first event's record: %+v", first)
	}

	// Kiln's streams live in the external server, not in an embedded store.
	names, _ := jsStreams(t, js)
	for _, want := range []string{"KILN_EVENTS_0", "KILNQ_" + account + "_natsdone", "KV_KILN_ASYNC_RUNS"} {
		if !slices.Contains(names, want) {
			t.Errorf("external JetStream lacks stream %s; has %v", want, names)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nats")); !os.IsNotExist(err) {
		t.Errorf("kiln made an embedded NATS store with --nats-url: %v", err)
	}

	// Events accepted, then a crash before they finish.
	const n = 12
	accepted := map[string]bool{}
	for i := range n {
		id, err := invokeEvent(t, c, "natsfn", []byte(fmt.Sprintf(`{"action":"sleep","ms":800,"i":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		accepted[id] = true
	}
	s.kill()
	// The unfinished ones wait in the external server while kiln is down.
	if _, pending := jsStreams(t, js); pending == 0 {
		t.Logf("all %d events had finished before the kill; the restart check proves less", n)
	} else {
		t.Logf("%d of %d events pending in the external server after SIGKILL", pending, n)
	}

	s2 := startServer(t, dir, args...)
	seen := s2.awaitSuccesses(t, "natsdone", accepted, 20*time.Second)
	if len(seen) != n {
		t.Fatalf("%d of %d events accepted before SIGKILL reached the destination after restart", len(seen), n)
	}
	if _, pending := jsStreams(t, js); pending != 0 {
		t.Errorf("%d events left in the external server after all ran", pending)
	}
}
