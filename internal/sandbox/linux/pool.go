//go:build linux

package linux

import (
	"context"
	"time"
)

// The pool of pre-started inits.
//
// One filler keeps Config.InitPool inits ready. A refill competes for the
// CPUs with the cold starts that emptied the pool (a runtime's init is
// CPU-bound, and on a small host a refill running beside it costs it
// milliseconds), so while sandboxes are starting, and for refillGrace after
// the last one settled (its first invoke usually follows at once), the
// filler waits, up to refillDefer, unless the pool is empty. A sandbox
// counts as starting from Create until its runtime's init ends (EndInit),
// its main process exits, or it is deleted.

// Delete tops the pool up itself (topUp), after its sandbox is gone: a
// deleted sandbox has freed its share of the host, the deleter is off any
// cold-start path, and a Delete that returns with the pool full and no
// refill in flight leaves the host's descriptor and cgroup counts steady,
// which leak checks rely on. fillMu makes the filler and topUp take turns.

// refillDefer bounds how long a refill waits for starting sandboxes;
// refillGrace is the quiet time it waits for after the last one.
const (
	refillDefer = 250 * time.Millisecond
	refillGrace = 20 * time.Millisecond
)

// takeInit returns a pre-started init, or starts one.
func (b *Backend) takeInit(ctx context.Context) (*initProc, error) {
	select {
	case p := <-b.iso.pool:
		b.kickPool()
		return p, nil
	default:
	}
	return b.spawnInit(ctx)
}

func (b *Backend) kickPool() {
	select {
	case b.iso.poolKick <- struct{}{}:
	default:
	}
}

// beginStarting and settle bracket a sandbox's start for the filler.
func (x *box) beginStarting() {
	x.b.iso.starting.Add(1)
}

func (x *box) settle() {
	x.settleOnce.Do(func() {
		x.b.iso.lastSettle.Store(time.Now().UnixNano())
		if x.b.iso.starting.Add(-1) == 0 {
			x.b.kickPool()
		}
	})
}

// busy reports whether a refill should wait, and for how long at most
// before it looks again.
func (b *Backend) busy() (bool, time.Duration) {
	if b.iso.starting.Load() > 0 {
		return true, refillDefer
	}
	if q := time.Since(time.Unix(0, b.iso.lastSettle.Load())); q < refillGrace {
		return true, refillGrace - q
	}
	return false, 0
}

// fillPool keeps Config.InitPool inits ready until Close.
func (b *Backend) fillPool() {
	defer b.iso.poolWG.Done()
	var deferredSince time.Time
	for {
		if len(b.iso.pool) >= cap(b.iso.pool) {
			deferredSince = time.Time{}
			select {
			case <-b.iso.poolStop:
				return
			case <-b.iso.poolKick:
			}
			continue
		}
		if busy, look := b.busy(); busy && len(b.iso.pool) > 0 {
			if deferredSince.IsZero() {
				deferredSince = time.Now()
			}
			if wait := min(refillDefer-time.Since(deferredSince), look); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-b.iso.poolStop:
					t.Stop()
					return
				case <-b.iso.poolKick:
				case <-t.C:
				}
				t.Stop()
				continue
			}
		}
		deferredSince = time.Time{}
		select {
		case <-b.iso.poolStop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), initStartTimeout)
		err := b.addInit(ctx)
		cancel()
		if err != nil {
			b.log.Warn("cannot pre-start a sandbox init", "err", err)
			select {
			case <-b.iso.poolStop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// addInit starts one init into the pool if it has room.
func (b *Backend) addInit(ctx context.Context) error {
	b.iso.fillMu.Lock()
	defer b.iso.fillMu.Unlock()
	select {
	case <-b.iso.poolStop:
		return nil // closePool drains after taking fillMu
	default:
	}
	if len(b.iso.pool) >= cap(b.iso.pool) {
		return nil
	}
	p, err := b.spawnInit(ctx)
	if err != nil {
		return err
	}
	// Only addInit adds, under fillMu, so there is room.
	select {
	case b.iso.pool <- p:
	default:
		b.discard(p)
	}
	return nil
}

// topUp fills the pool before a Delete returns (see above).
func (b *Backend) topUp(ctx context.Context) {
	for range cap(b.iso.pool) {
		select {
		case <-b.iso.poolStop:
			return
		default:
		}
		if len(b.iso.pool) >= cap(b.iso.pool) || ctx.Err() != nil {
			return
		}
		if err := b.addInit(ctx); err != nil {
			b.log.Warn("cannot pre-start a sandbox init", "err", err)
			return
		}
	}
}

// closePool stops the filler and discards the ready inits.
func (b *Backend) closePool() {
	close(b.iso.poolStop)
	b.iso.poolWG.Wait()
	// A Delete's topUp may be adding one: let it finish first.
	b.iso.fillMu.Lock()
	defer b.iso.fillMu.Unlock()
	for {
		select {
		case p := <-b.iso.pool:
			b.discard(p)
		default:
			return
		}
	}
}
