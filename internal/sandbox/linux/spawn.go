package linux

import (
	"context"
	"runtime"
	"sync"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

// spawner forks every sandbox process from a few OS threads that Kiln owns
// for its whole life. Two reasons:
//   - Pdeathsig fires when the *thread* that forked a child exits, not the
//     process. Go keeps idle threads, but any goroutine anywhere that exits
//     while locked to its thread (a common trick around setns) destroys that
//     thread, and would SIGKILL runtimes forked from it at random. Threads
//     that only ever fork and never exit until Close make Pdeathsig mean
//     "Kiln died".
//   - On cgroup v1 the forking thread moves itself into the sandbox's
//     cgroups for the fork (see v1Group.spawn), which must not happen on a
//     thread that other goroutines share.
//
// Later isolation (namespaces, a re-exec'd init) forks here too.
type spawner struct {
	reqs chan spawnReq
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type spawnReq struct {
	// fn runs on a locked spawner thread; it returns true when it left the
	// thread in a state no later work may inherit, and the thread exits.
	fn   func() (tainted bool)
	done chan struct{}
}

func newSpawner(n int) *spawner {
	s := &spawner{reqs: make(chan spawnReq), stop: make(chan struct{})}
	s.wg.Add(n)
	for range n {
		go s.loop()
	}
	return s
}

// do runs fn on a spawner thread and waits for it. ctx bounds only the wait
// for a free thread: a fork that has begun is never abandoned.
func (s *spawner) do(ctx context.Context, fn func() bool) error {
	req := spawnReq{fn: fn, done: make(chan struct{})}
	select {
	case s.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stop:
		return sandbox.ErrClosed
	}
	<-req.done
	return nil
}

func (s *spawner) loop() {
	defer s.wg.Done()
	// Never unlocked: returning destroys the thread (and so fires the
	// parent-death signal of whatever it forked that still runs).
	runtime.LockOSThread()
	for {
		select {
		case <-s.stop:
			return
		case r := <-s.reqs:
			tainted := r.fn()
			close(r.done)
			if tainted {
				s.wg.Add(1)
				go s.loop()
				return
			}
		}
	}
}

// close stops the threads; they exit.
func (s *spawner) close() {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
}
