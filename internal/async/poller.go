package async

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/frontend"
)

// Enqueue stores an accepted event durably. It returns only once JetStream
// has acknowledged the write; the caller answers 202 after that.
func (e *Engine) Enqueue(ctx context.Context, in *frontend.AsyncEvent) error {
	ev := &event{
		RequestID:     in.RequestID,
		Account:       in.AccountID,
		Function:      in.FunctionName,
		Qualifier:     in.Qualifier,
		AcceptedMs:    e.now().UnixMilli(),
		ClientContext: in.ClientContext,
		Payload:       in.Payload,
	}
	if err := e.publishEvent(ctx, ev); err != nil {
		e.log.Error("enqueue event", "request_id", ev.RequestID, "err", err)
		return errdefs.ServiceUnavailable("The event could not be queued; retry the request.")
	}
	e.stats.Accepted.Add(1)
	return nil
}

func (e *Engine) publishEvent(ctx context.Context, ev *event) error {
	subj := eventSubject + "." + strconv.Itoa(e.partition(ev.RequestID)) + "." + ev.Account
	// In a cluster a partition whose leader died answers again once its
	// other servers elected one; the message id makes a retry harmless.
	return e.jsRetry(ctx, func(ctx context.Context) error {
		_, err := e.js.PublishMsg(ctx, ev.msg(subj), jetstream.WithMsgID(ev.msgID()))
		return err
	})
}

// poll leases events (only as many as there are free run slots, so no
// leased event waits in a buffer while its lease runs out) and runs each.
func (e *Engine) poll(ctx context.Context, cons jetstream.Consumer, slots chan struct{}) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		n := 1
	more:
		// Each partition takes at most its share per fetch, so an idle
		// partition's pending fetch never holds every free slot.
		for n < max(1, e.cfg.Concurrency/e.cfg.Partitions) {
			select {
			case slots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			for range n {
				<-slots
			}
			if ctx.Err() == nil {
				e.log.Warn("fetch events", "err", err)
				sleep(ctx, 200*time.Millisecond)
			}
			continue
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				e.handle(ctx, msg)
			}()
		}
		for range n - got {
			<-slots
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			e.log.Debug("fetch batch", "err", err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// policy is the effective FunctionEventInvokeConfig of an event.
type policy struct {
	maxRetries int
	maxAge     time.Duration
	onSuccess  string
	onFailure  string
	deadLetter string // DeadLetterConfig.TargetArn (deadletter.go)
	reserved0  bool
}

func (e *Engine) policy(ev *event) policy {
	p := policy{maxRetries: DefaultMaxRetries, maxAge: DefaultMaxAge}
	if e.cfg.Configs == nil {
		return p
	}
	if c, ok := e.cfg.Configs.EventInvokeConfig(ev.Account, ev.Function, ev.configQualifier()); ok {
		if c.MaximumRetryAttempts != nil {
			p.maxRetries = *c.MaximumRetryAttempts
		}
		if c.MaximumEventAgeInSeconds != nil {
			p.maxAge = time.Duration(*c.MaximumEventAgeInSeconds) * time.Second
		}
		p.onSuccess, p.onFailure = c.OnSuccess, c.OnFailure
	}
	p.deadLetter = e.deadLetterOf(ev)
	if rc, ok := e.cfg.Configs.(ReservedConcurrency); ok {
		if n, set := rc.ReservedConcurrency(ev.Account, ev.Function); set && n == 0 {
			p.reserved0 = true
		}
	}
	return p
}

// handle runs one delivery of an event and settles it. Every path either
// acks after the outcome is durable, or naks (the event stays queued).
func (e *Engine) handle(ctx context.Context, msg jetstream.Msg) {
	ev, err := decodeEvent(msg.Headers(), msg.Data())
	if err != nil {
		e.stats.Malformed.Add(1)
		e.log.Error("drop malformed event", "err", err)
		_ = msg.Term()
		return
	}
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}
	// A redelivery that does not follow one of our own naks means the
	// previous delivery's lease ran out (server killed, poller stuck): that
	// delivery may have run the function, so this run may be a duplicate.
	// Naks are journaled (rare path) so the common path writes nothing extra.
	if delivered > 1 {
		if _, err := e.runs.Get(ctx, nakKey(ev, delivered-1)); errors.Is(err, jetstream.ErrKeyNotFound) {
			e.stats.Duplicates.Add(1)
			e.log.Info("event redelivered after a lost lease; it may run twice", "request_id", ev.RequestID, "attempt", ev.Attempts+1)
		}
	}
	now := e.now()
	if wait := time.UnixMilli(ev.NotBeforeMs).Sub(now); wait > 0 {
		e.nak(ctx, msg, ev, delivered, wait)
		return
	}
	p := e.policy(ev)
	log := e.log.With("request_id", ev.RequestID, "function", ev.Function)
	if p.reserved0 {
		e.fail(ctx, msg, ev, p, "RetriesExhausted", nil, log)
		return
	}
	if now.Sub(time.UnixMilli(ev.AcceptedMs)) > p.maxAge {
		e.fail(ctx, msg, ev, p, "EventAgeExceeded", nil, log)
		return
	}
	hctx, stop := context.WithCancel(ctx)
	go e.extendLease(hctx, msg)
	e.stats.Runs.Add(1)
	out, ierr := e.cfg.Invoker.Invoke(ctx, &frontend.InvokeInput{
		RequestID:     ev.RequestID,
		AccountID:     ev.Account,
		FunctionRef:   ev.Function,
		Qualifier:     ev.Qualifier,
		Payload:       ev.Payload,
		ClientContext: ev.ClientContext,
	})
	stop()
	switch {
	case ierr != nil && errors.Is(ierr, errdefs.ErrNotFound):
		// The function (or its alias) was deleted after the event was
		// accepted: a final failure, never a retry. Deleting a function
		// also deletes its async settings, so the event usually has no
		// destination left and is dropped, as on Lambda; a deleted alias or
		// version can still leave the function's DLQ or destination.
		e.stats.FunctionGone.Add(1)
		log.Warn("function gone; event fails without retry", "err", ierr)
		e.fail(ctx, msg, ev, e.policy(ev), "RetriesExhausted", nil, log)
	case ierr != nil:
		// Throttle or system error: back to the queue with exponential
		// backoff until the event is too old.
		d := e.backoff(delivered)
		if now := e.now(); now.Add(d).Sub(time.UnixMilli(ev.AcceptedMs)) > p.maxAge {
			e.fail(ctx, msg, ev, p, "EventAgeExceeded", nil, log)
			return
		}
		e.stats.SystemRetries.Add(1)
		log.Debug("event throttled or failed before running; backing off", "delay", d, "err", ierr)
		e.nak(ctx, msg, ev, delivered, d)
	case out.FunctionError == "":
		e.stats.Succeeded.Add(1)
		if p.onSuccess != "" {
			e.deliver(ctx, p.onSuccess, ev, e.record(ev, "Success", ev.Attempts+1, out), log)
		}
		e.ack(ctx, msg, ev)
	default:
		e.stats.FunctionErrors.Add(1)
		attempts := ev.Attempts + 1
		if attempts > p.maxRetries {
			e.fail(ctx, msg, ev, p, "RetriesExhausted", out, log)
			return
		}
		delay := time.Minute
		if attempts > 1 {
			delay = 2 * time.Minute
		}
		delay = e.scale(delay)
		next := *ev
		next.Attempts = attempts
		next.NotBeforeMs = e.now().Add(delay).UnixMilli()
		if time.UnixMilli(next.NotBeforeMs).Sub(time.UnixMilli(ev.AcceptedMs)) > p.maxAge {
			e.fail(ctx, msg, ev, p, "EventAgeExceeded", out, log)
			return
		}
		if err := e.publishEvent(ctx, &next); err != nil {
			log.Warn("requeue retry", "err", err)
			e.nak(ctx, msg, ev, delivered, time.Second)
			return
		}
		e.stats.Retries.Add(1)
		e.ack(ctx, msg, ev)
	}
}

// nakKey names the journal entry of our own nak of one delivery.
func nakKey(ev *event, delivered uint64) string {
	return ev.RequestID + "_" + strconv.Itoa(ev.Attempts) + "_" + strconv.FormatUint(delivered, 10)
}

// nak returns the event to the queue for delay, journaling that this
// redelivery is ours so it is not counted as a duplicate.
func (e *Engine) nak(ctx context.Context, msg jetstream.Msg, ev *event, delivered uint64, delay time.Duration) {
	if _, err := e.runs.Put(ctx, nakKey(ev, delivered), []byte{1}); err != nil {
		e.log.Warn("journal nak", "request_id", ev.RequestID, "err", err)
	}
	_ = msg.NakWithDelay(delay)
}

func (e *Engine) scale(d time.Duration) time.Duration {
	return time.Duration(float64(d) * e.cfg.RetryScale)
}

// backoff is Lambda's throttle backoff: 1 s doubling to 5 min.
func (e *Engine) backoff(delivered uint64) time.Duration {
	d := time.Second
	for i := uint64(1); i < delivered && d < 5*time.Minute; i++ {
		d *= 2
	}
	return e.scale(min(d, 5*time.Minute))
}

// extendLease keeps the event leased while its invoke runs.
func (e *Engine) extendLease(ctx context.Context, msg jetstream.Msg) {
	t := time.NewTicker(e.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = msg.InProgress()
		}
	}
}

func (e *Engine) ack(ctx context.Context, msg jetstream.Msg, ev *event) {
	if err := msg.DoubleAck(ctx); err != nil {
		// The event will be redelivered and counted as a duplicate.
		e.log.Warn("ack event", "request_id", ev.RequestID, "err", err)
	}
}

// fail sends a failed event to its failure destination (if any), then acks.
func (e *Engine) fail(ctx context.Context, msg jetstream.Msg, ev *event, p policy, condition string, out *frontend.InvokeOutput, log interface {
	Warn(string, ...any)
}) {
	if condition == "EventAgeExceeded" {
		e.stats.AgeExpired.Add(1)
	} else {
		e.stats.RetriesExhausted.Add(1)
	}
	count := ev.Attempts
	if out != nil {
		count++
	}
	if p.deadLetter != "" && !e.deadLetter(ctx, p.deadLetter, ev, log) {
		delivered := uint64(1)
		if md, err := msg.Metadata(); err == nil {
			delivered = md.NumDelivered
		}
		e.nak(ctx, msg, ev, delivered, e.scale(time.Minute))
		return
	}
	if p.onFailure != "" {
		if !e.deliver(ctx, p.onFailure, ev, e.record(ev, condition, count, out), log) {
			// Keep the event: the destination may come back.
			delivered := uint64(1)
			if md, err := msg.Metadata(); err == nil {
				delivered = md.NumDelivered
			}
			e.nak(ctx, msg, ev, delivered, e.scale(time.Minute))
			return
		}
	} else if p.deadLetter == "" {
		e.stats.Dropped.Add(1)
		log.Warn("async event failed with no failure destination", "condition", condition)
	}
	e.ack(ctx, msg, ev)
}

// deliver writes a record to a destination ARN: a function (queued as a new
// async event) or a Kiln queue. It reports whether the record is durable.
func (e *Engine) deliver(ctx context.Context, dest string, ev *event, rec []byte, log interface {
	Warn(string, ...any)
}) bool {
	d, err := parseDestination(dest)
	if err != nil || d.account != ev.Account {
		e.stats.DestinationFailures.Add(1)
		log.Warn("bad destination", "destination", dest, "err", err)
		return true // never deliverable: do not hold the event forever
	}
	switch d.kind {
	case destFunction:
		next := &event{
			RequestID:  uuid.NewString(),
			Account:    d.account,
			Function:   d.name,
			Qualifier:  d.qualifier,
			AcceptedMs: e.now().UnixMilli(),
			Payload:    rec,
		}
		err = e.publishEvent(ctx, next)
	case destQueue:
		err = e.publishQueue(ctx, d.account, d.name, rec)
	}
	if err != nil {
		e.stats.DestinationFailures.Add(1)
		log.Warn("destination delivery", "destination", dest, "err", err)
		return errors.Is(err, errNoQueue)
	}
	e.stats.DestinationDeliveries.Add(1)
	return true
}
