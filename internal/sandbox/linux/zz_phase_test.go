//go:build linux

package linux

import (
	"context"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/kiln-dev/kiln/internal/sandbox"
)

func TestZZPhases(t *testing.T) {
	for _, bk := range []*Backend{newHostBackend(t, Config{}), unifiedHybridBackend(t)} {
		ctx := context.Background()
		tmp := t.TempDir()
		var c, s, w, d, base time.Duration
		const n = 300
		for i := range n {
			t0 := time.Now()
			_ = exec.Command("/bin/true").Run()
			base += time.Since(t0)
			id := "ph" + strconv.Itoa(i)
			t0 = time.Now()
			sb, err := bk.Create(ctx, sandbox.Spec{ID: id, Argv: []string{"/bin/true"}, TmpDir: tmp + "/" + id, MemoryBytes: 128 << 20, CPUWeightMB: 128})
			if err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			if err := sb.Start(ctx); err != nil {
				t.Fatal(err)
			}
			t2 := time.Now()
			sb.Wait(ctx)
			t3 := time.Now()
			sb.Delete(ctx)
			t4 := time.Now()
			c += t1.Sub(t0); s += t2.Sub(t1); w += t3.Sub(t2); d += t4.Sub(t3)
		}
		t.Logf("v%d: baseline %v create %v start %v wait %v delete %v", bk.CgroupVersion(), base/n, c/n, s/n, w/n, d/n)
	}
}
