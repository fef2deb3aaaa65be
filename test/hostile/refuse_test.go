package hostile

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-dev/kiln/test/kilnproc"
)

// TestRefusesWithoutRoot: isolation needs root; without it kiln server
// refuses to start and names the unsafe flag, instead of running functions
// unisolated.
func TestRefusesWithoutRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to drop to another user")
	}
	bin := kilnproc.Binary(t)
	data, err := os.MkdirTemp("", "kiln-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(data) })
	if err := os.Chmod(data, 0o777); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--data-dir", data+"/d", "--log-level", "error")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--unsafe-no-isolation") {
		t.Fatalf("non-root server: %v\n%s", err, out)
	}
}
