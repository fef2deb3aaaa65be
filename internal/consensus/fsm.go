package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"

	"github.com/hashicorp/raft"
)

// muxFSM is the raft.FSM that dispatches framed commands to Parts and
// combines their snapshots into one.
type muxFSM struct {
	parts map[string]Part // fixed after Start
	log   *slog.Logger

	// orphans are snapshot sections of parts this binary does not register
	// (e.g. written by a newer Kiln). They are carried into the next snapshot
	// so a downgrade-and-upgrade does not silently drop that state.
	mu      sync.Mutex
	orphans map[string][]byte

	// Results of recently applied commands by index, so a follower that
	// forwarded a command can read the result its own replica computed
	// (Apply is deterministic, so it is the leader's result too).
	resMu    sync.Mutex
	results  [resultRing]indexedResult
	applied  uint64        // index of the last command applied here
	restores uint64        // counts Restore calls (a snapshot may skip indexes)
	notify   chan struct{} // closed and replaced on every apply and restore
}

// resultRing is how many recent results are kept (a power of two).
const resultRing = 4096

type indexedResult struct {
	index uint64
	res   any
}

// record stores one applied command's result and wakes waiters.
func (m *muxFSM) record(index uint64, res any) {
	m.resMu.Lock()
	m.results[index%resultRing] = indexedResult{index, res}
	if index > m.applied {
		m.applied = index
	}
	m.wakeLocked()
	m.resMu.Unlock()
}

func (m *muxFSM) wakeLocked() {
	if m.notify != nil {
		close(m.notify)
		m.notify = nil
	}
}

// resultAt reports the local result of the command at index: ok is false
// while it is not applied here yet; gone is true when it was applied but its
// result is no longer known (overwritten in the ring, or skipped by a
// snapshot restore).
func (m *muxFSM) resultAt(index, restoresBefore uint64) (res any, ok, gone bool, wake <-chan struct{}) {
	m.resMu.Lock()
	defer m.resMu.Unlock()
	if e := m.results[index%resultRing]; e.index == index {
		return e.res, true, false, nil
	}
	if m.applied >= index || m.restores != restoresBefore {
		return nil, false, true, nil
	}
	if m.notify == nil {
		m.notify = make(chan struct{})
	}
	return nil, false, false, m.notify
}

func (m *muxFSM) restoreCount() uint64 {
	m.resMu.Lock()
	defer m.resMu.Unlock()
	return m.restores
}

// Apply runs in Raft's FSM goroutine.
func (m *muxFSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	name, cmd, err := unframe(l.Data)
	if err != nil {
		m.log.Error("skipping malformed log entry", "index", l.Index, "err", err)
		return err
	}
	p, ok := m.parts[name]
	if !ok {
		m.log.Warn("skipping log entry for unregistered part", "index", l.Index, "part", name)
		err := fmt.Errorf("%w: %q", ErrUnknownPart, name)
		m.record(l.Index, err)
		return err
	}
	res := p.Apply(l.Index, cmd)
	m.record(l.Index, res)
	return res
}

// Snapshot asks each part for its state here, in the FSM goroutine, so the
// sections are consistent with one log index; Persist then only writes bytes.
func (m *muxFSM) Snapshot() (raft.FSMSnapshot, error) {
	sections := map[string][]byte{}
	m.mu.Lock()
	for k, v := range m.orphans {
		sections[k] = v
	}
	m.mu.Unlock()
	for name, p := range m.parts {
		b, err := p.Snapshot()
		if err != nil {
			return nil, fmt.Errorf("snapshot part %s: %w", name, err)
		}
		sections[name] = b
	}
	return &muxSnapshot{data: encodeSnapshot(sections)}, nil
}

func (m *muxFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	sections, err := decodeSnapshot(b)
	if err != nil {
		return err
	}
	for name, p := range m.parts {
		if err := p.Restore(sections[name]); err != nil {
			return fmt.Errorf("restore part %s: %w", name, err)
		}
		delete(sections, name)
	}
	m.mu.Lock()
	m.orphans = sections
	m.mu.Unlock()
	m.resMu.Lock()
	m.restores++
	m.wakeLocked()
	m.resMu.Unlock()
	for name := range sections {
		m.log.Warn("snapshot holds state of an unregistered part; keeping it", "part", name)
	}
	return nil
}

type muxSnapshot struct{ data []byte }

func (s *muxSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s.data); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *muxSnapshot) Release() {}

// Snapshot format: magic, uvarint count, then per section (sorted by name):
// uvarint len(name), name, uvarint len(data), data.
var snapMagic = [4]byte{'K', 'S', 'N', '1'}

var errBadSnapshot = errors.New("consensus: malformed snapshot")

func encodeSnapshot(sections map[string][]byte) []byte {
	names := make([]string, 0, len(sections))
	size := len(snapMagic) + binary.MaxVarintLen64
	for n, d := range sections {
		names = append(names, n)
		size += 2*binary.MaxVarintLen64 + len(n) + len(d)
	}
	sort.Strings(names)
	b := make([]byte, 0, size)
	b = append(b, snapMagic[:]...)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
		b = binary.AppendUvarint(b, uint64(len(sections[n])))
		b = append(b, sections[n]...)
	}
	return b
}

func decodeSnapshot(b []byte) (map[string][]byte, error) {
	if !bytes.HasPrefix(b, snapMagic[:]) {
		return nil, errBadSnapshot
	}
	b = b[len(snapMagic):]
	count, k := binary.Uvarint(b)
	if k <= 0 || count > uint64(len(b)) {
		return nil, errBadSnapshot
	}
	b = b[k:]
	next := func() ([]byte, error) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, errBadSnapshot
		}
		v := b[k : k+int(l)]
		b = b[k+int(l):]
		return v, nil
	}
	out := make(map[string][]byte, count)
	for i := uint64(0); i < count; i++ {
		name, err := next()
		if err != nil {
			return nil, err
		}
		data, err := next()
		if err != nil {
			return nil, err
		}
		out[string(name)] = data
	}
	if len(b) != 0 {
		return nil, errBadSnapshot
	}
	return out, nil
}
