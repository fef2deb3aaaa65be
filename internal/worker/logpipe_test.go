package worker

import (
	"fmt"
	"strings"
	"testing"
)

// TestDrainSeesEverythingWritten: once the runtime's write() returned,
// drain must not return before the reader has turned those bytes into
// lines (END would otherwise come before the function's last lines).
func TestDrainSeesEverythingWritten(t *testing.T) {
	p, err := newLogPipe("123456789012", "fn", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.run()
	}()
	defer func() {
		p.close()
		<-done
	}()
	const lines = 40
	for round := range 300 {
		p.beginInvocation()
		var b strings.Builder
		for i := range lines {
			fmt.Fprintf(&b, "round %d line %d %s\n", round, i, strings.Repeat("x", 60))
		}
		if _, err := p.writer.WriteString(b.String()); err != nil {
			t.Fatal(err)
		}
		p.drain()
		got := p.invocationTail(1 << 20)
		if n := strings.Count(string(got), "\n"); n != lines {
			t.Fatalf("round %d: drain returned with %d of %d lines read", round, n, lines)
		}
		p.endInvocation()
	}
}
