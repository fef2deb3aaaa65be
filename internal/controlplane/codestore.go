package controlplane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// codeStore keeps zips content-addressed in dir as <sha256hex>.zip.
//
// mu orders writes against garbage collection: a handler holds it shared from
// writing a zip until the command that references it is applied, and the
// collector holds it exclusively while it deletes unreferenced zips, so it
// never deletes a file that a command in flight is about to reference.
type codeStore struct {
	dir string
	mu  sync.RWMutex
	// push copies a zip to the cluster's other voters (replicate.go); it is
	// a no-op on a lone node.
	push func(ctx context.Context, hex string, data []byte) error
}

func newCodeStore(dataDir string) (*codeStore, error) {
	dir := filepath.Join(dataDir, "code")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("controlplane: create code dir: %w", err)
	}
	return &codeStore{dir: dir}, nil
}

func isSha256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (c *codeStore) path(hex string) string {
	if !isSha256Hex(hex) {
		return ""
	}
	return filepath.Join(c.dir, hex+".zip")
}

// put stores data durably here and, in a cluster, on a majority of the
// voters, before the command that references it is proposed. The caller
// holds c.mu shared.
func (c *codeStore) put(hex string, data []byte) error {
	if err := c.store(hex, data); err != nil {
		return err
	}
	if c.push == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	return c.push(ctx, hex, data)
}

// store stores data durably under hex (write to a temp file, fsync, rename,
// fsync the directory). A complete file already there is kept: the name is
// its content's hash and renames are atomic, so it cannot be partial.
// The caller holds c.mu shared.
func (c *codeStore) store(hex string, data []byte) error {
	p := c.path(hex)
	if p == "" {
		return fmt.Errorf("controlplane: bad code digest %q", hex)
	}
	if fi, err := os.Stat(p); err == nil && fi.Size() == int64(len(data)) {
		return nil
	}
	f, err := os.CreateTemp(c.dir, ".tmp-"+hex[:16]+"-*")
	if err != nil {
		return fmt.Errorf("controlplane: store code: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("controlplane: store code: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("controlplane: store code: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("controlplane: store code: %w", err)
	}
	return syncDir(c.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("controlplane: sync code dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("controlplane: sync code dir: %w", err)
	}
	return nil
}

// releaseCode deletes the zips among hexes that no version references any
// more (after a delete or an update moved $LATEST off them).
func (s *Service) releaseCode(hexes []string) {
	if len(hexes) == 0 {
		return
	}
	s.code.mu.Lock()
	defer s.code.mu.Unlock()
	for _, h := range hexes {
		s.mu.RLock()
		used := s.st.refs[h] > 0
		s.mu.RUnlock()
		if used {
			continue
		}
		if p := s.code.path(h); p != "" {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				s.log.Warn("remove unreferenced code", "sha256", h, "err", err)
			}
		}
	}
}

// SweepCode removes zips no version references and temp files left by a
// crash between writing a zip and replicating the command that uses it.
// Call it after the consensus node has started (state is complete then).
func (s *Service) SweepCode(ctx context.Context) (removed int, err error) {
	s.code.mu.Lock()
	defer s.code.mu.Unlock()
	entries, err := os.ReadDir(s.code.dir)
	if err != nil {
		return 0, fmt.Errorf("controlplane: sweep code: %w", err)
	}
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		name := e.Name()
		keep := false
		if hex, ok := strings.CutSuffix(name, ".zip"); ok && isSha256Hex(hex) {
			s.mu.RLock()
			keep = s.st.refs[hex] > 0
			s.mu.RUnlock()
		}
		if keep {
			continue
		}
		if err := os.Remove(filepath.Join(s.code.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, fmt.Errorf("controlplane: sweep code: %w", err)
		}
		removed++
	}
	if removed > 0 {
		s.log.Info("swept unreferenced code", "files", removed)
	}
	return removed, nil
}
