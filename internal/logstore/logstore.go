package logstore

import (
	"sync"
	"time"
)

// Event is one log line.
type Event struct {
	Timestamp int64  // epoch milliseconds
	Message   string // without the trailing newline
}

// Store holds the last Capacity lines per function.
type Store struct {
	capacity int
	now      func() time.Time

	mu    sync.Mutex
	rings map[string]*ring
}

type ring struct {
	buf  []Event
	next int
	full bool
}

// New returns a store that keeps capacity lines per function (0 → 2000).
func New(capacity int, now func() time.Time) *Store {
	if capacity <= 0 {
		capacity = 2000
	}
	if now == nil {
		now = time.Now
	}
	return &Store{capacity: capacity, now: now, rings: make(map[string]*ring)}
}

func key(account, function string) string { return account + "\x00" + function }

// Append adds lines for a function, stamping them with the current time.
func (s *Store) Append(account, function string, lines ...string) {
	ts := s.now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key(account, function)
	r := s.rings[k]
	if r == nil {
		r = &ring{buf: make([]Event, s.capacity)}
		s.rings[k] = r
	}
	for _, l := range lines {
		r.buf[r.next] = Event{Timestamp: ts, Message: l}
		r.next++
		if r.next == len(r.buf) {
			r.next = 0
			r.full = true
		}
	}
}

// Tail returns up to n of the most recent lines, oldest first.
func (s *Store) Tail(account, function string, n int) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rings[key(account, function)]
	if r == nil {
		return nil
	}
	var all []Event
	if r.full {
		all = append(all, r.buf[r.next:]...)
	}
	all = append(all, r.buf[:r.next]...)
	if n > 0 && len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Forget drops a function's lines (when the function is deleted).
func (s *Store) Forget(account, function string) {
	s.mu.Lock()
	delete(s.rings, key(account, function))
	s.mu.Unlock()
}
