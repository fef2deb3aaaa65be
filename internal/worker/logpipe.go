package worker

import (
	"bytes"
	"errors"
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
	partial []byte
	done    bool
	inv     bytes.Buffer // log of the invocation in progress
	inInv   bool
}

func newLogPipe(account, function string, sink LogSink) (*logPipe, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	return &logPipe{account: account, function: function, sink: sink, r: r, writer: w}, nil
}

func (p *logPipe) closeWriter() {
	if p.writer != nil {
		_ = p.writer.Close()
	}
}

func (p *logPipe) run() {
	buf := make([]byte, 32*1024)
	rc, err := p.r.SyscallConn()
	if err != nil {
		p.finish()
		return
	}
	for {
		eof := false
		// The read and the split into lines happen under p.mu, so drain,
		// holding p.mu, sees either bytes still in the pipe or bytes
		// already turned into lines, never bytes in between. The pipe is
		// non-blocking (os.Pipe registers it with the poller): a read
		// with nothing to read returns EAGAIN and rc.Read waits outside
		// the lock.
		rerr := rc.Read(func(fd uintptr) bool {
			p.mu.Lock()
			defer p.mu.Unlock()
			for {
				n, err := unix.Read(int(fd), buf)
				switch {
				case errors.Is(err, unix.EINTR):
					continue
				case errors.Is(err, unix.EAGAIN):
					return false
				case err != nil || n <= 0:
					eof = true
				default:
					p.consume(buf[:n])
				}
				return true
			}
		})
		if rerr != nil || eof {
			p.finish()
			return
		}
	}
}

// finish flushes a last unterminated line once the runtime's output ends.
func (p *logPipe) finish() {
	p.mu.Lock()
	if len(p.partial) > 0 {
		p.line(p.partial)
		p.partial = p.partial[:0]
	}
	p.done = true
	p.mu.Unlock()
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
// pipe by now: FIONREAD, asked under p.mu (which the reader holds from its
// read until the bytes are lines), tells whether the reader still has work.
func (p *logPipe) drain() {
	deadline := time.Now().Add(50 * time.Millisecond)
	rc, rcErr := p.r.SyscallConn()
	for {
		p.mu.Lock()
		pending := 0
		if rcErr == nil {
			_ = rc.Control(func(fd uintptr) {
				pending, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
			})
		}
		if pending == 0 || p.done {
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
