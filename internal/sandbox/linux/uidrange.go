//go:build linux

package linux

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Several kiln servers can share one host (a test cluster on 127.0.0.x, or
// two data dirs). Each must own a distinct host uid range, or two servers'
// sandboxes — of different accounts — could run as the same host uid. A
// server claims the first free range with a flock on a file under
// /run/kiln; the kernel drops the lock when the process dies, so a crashed
// server's range is free again without any cleanup.

const (
	defaultUIDBase = 0x70000000
	uidRanges      = 256 // 0x70000000 … 0x70ffffff with 65536 ids each
)

// claimUIDRange locks a free range of n ids and returns its base and the
// lock file to keep open for as long as the range is in use.
func claimUIDRange(n uint32) (uint32, *os.File, error) {
	dir := "/run/kiln"
	if _, err := os.Stat("/run"); err != nil {
		dir = filepath.Join(os.TempDir(), "kiln-run")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, nil, fmt.Errorf("uid range lock dir: %w", err)
	}
	step := uint64(max(n, 65536))
	for i := range uint64(uidRanges) {
		base := uint64(defaultUIDBase) + i*step
		if base+uint64(n) >= 1<<32-1 {
			break
		}
		p := filepath.Join(dir, "uid-range-"+strconv.FormatUint(base, 16)+".lock")
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return 0, nil, fmt.Errorf("uid range lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			_ = f.Close()
			continue
		}
		return uint32(base), f, nil
	}
	return 0, nil, fmt.Errorf("all %d host uid ranges are in use by other kiln servers", uidRanges)
}
