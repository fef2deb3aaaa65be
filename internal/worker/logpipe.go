package worker

import (
	"bytes"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxLine caps one log line; longer output is split, as CloudWatch does.
const maxLine = 256 * 1024

// logPipe collects a sandbox's stdout and stderr (one pipe, so their order is
// kept), forwards complete lines to the function's log sink, and keeps the
// current invocation's log for X-Amz-Log-Result.
type logPipe struct {
	account, function string
	sink              LogSink

	r      *os.File
	writer *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	partial []byte
	busy    bool // the reader holds bytes it has not yet turned into lines
	done    bool
	inv     bytes.Buffer // log of the invocation in progress
	inInv   bool
}

func newLogPipe(account, function string, sink LogSink) (*logPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &logPipe{account: account, function: function, sink: sink, r: r, writer: w}
	p.cond = sync.NewCond(&p.mu)
	return p, nil
}

func (p *logPipe) closeWriter() {
	if p.writer != nil {
		_ = p.writer.Close()
	}
}

func (p *logPipe) run() {
	buf := make([]byte, 32*1024)
	for {
		n, err := p.r.Read(buf)
		if n > 0 {
			p.mu.Lock()
			p.busy = true
			p.consume(buf[:n])
			p.busy = false
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		if err != nil {
			p.mu.Lock()
			if len(p.partial) > 0 {
				p.line(p.partial)
				p.partial = p.partial[:0]
			}
			p.done = true
			p.cond.Broadcast()
			p.mu.Unlock()
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				return
			}
			return
		}
	}
}

// consume splits data into lines; p.mu is held.
func (p *logPipe) consume(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			p.partial = append(p.partial, data...)
			if len(p.partial) >= maxLine {
				p.line(p.partial)
				p.partial = p.partial[:0]
			}
			return
		}
		if len(p.partial) > 0 {
			p.partial = append(p.partial, data[:i]...)
			p.line(p.partial)
			p.partial = p.partial[:0]
		} else {
			p.line(data[:i])
		}
		data = data[i+1:]
	}
}

// line records one complete line; p.mu is held.
func (p *logPipe) line(l []byte) {
	s := string(l)
	if p.sink != nil {
		p.sink.Append(p.account, p.function, s)
	}
	if p.inInv {
		p.inv.WriteString(s)
		p.inv.WriteByte('\n')
	}
}

// emit writes a platform line (START, END, REPORT …) in order with the
// function's own output.
func (p *logPipe) emit(s string) {
	p.mu.Lock()
	p.line([]byte(s))
	p.mu.Unlock()
}

func (p *logPipe) beginInvocation() {
	p.mu.Lock()
	p.inv.Reset()
	p.inInv = true
	p.mu.Unlock()
}

func (p *logPipe) endInvocation() {
	p.mu.Lock()
	p.inInv = false
	if p.inv.Cap() > 64*1024 {
		p.inv = bytes.Buffer{}
	}
	p.mu.Unlock()
}

// drain waits (briefly) until everything the runtime wrote before it
// answered has been read, so END comes after the function's last line. The
// runtime's write() finished before its /response, so the bytes are in the
// pipe by now: FIONREAD tells whether the reader still has work.
func (p *logPipe) drain() {
	deadline := time.Now().Add(50 * time.Millisecond)
	for {
		pending := 0
		if rc, err := p.r.SyscallConn(); err == nil {
			_ = rc.Control(func(fd uintptr) {
				pending, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
			})
		}
		p.mu.Lock()
		if (pending == 0 && !p.busy) || p.done {
			if len(p.partial) > 0 {
				p.line(p.partial)
				p.partial = p.partial[:0]
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// invocationTail returns the last n bytes of the current invocation's log.
func (p *logPipe) invocationTail(n int) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.inv.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return append([]byte(nil), b...)
}

func (p *logPipe) close() {
	p.closeWriter()
	_ = p.r.Close()
}
