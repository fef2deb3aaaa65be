package codepkg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// The seed corpora live in testdata/fuzz/<FuzzName>/ so plain `go test`
// replays them. Regenerate with KILN_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds.

var fuzzLimits = Limits{MaxZipped: 1 << 20, MaxUnzipped: 4 << 20, MaxFiles: 200}

func FuzzInspect(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Inspect(data, fuzzLimits)
		if err != nil {
			var ae *errdefs.APIError
			if !errors.As(err, &ae) {
				t.Fatalf("non-API error %v", err)
			}
			if len(ae.Message) > 200 {
				t.Fatalf("message too long: %q", ae.Message)
			}
			return
		}
		if info.Size != int64(len(data)) || info.Files > fuzzLimits.MaxFiles || info.UnzippedSize > fuzzLimits.MaxUnzipped {
			t.Fatalf("Info %+v out of bounds", info)
		}
	})
}

// FuzzExtract must never panic and never write outside its target: after
// each run the sandbox holds only the target (or nothing), and every link
// in the target resolves inside it.
func FuzzExtract(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) { checkExtract(t, data) })
}

// FuzzExtractEntries builds zips from fuzzed names and link targets, which
// reaches the path and symlink rules far faster than raw bytes do.
func FuzzExtractEntries(f *testing.F) {
	f.Fuzz(func(t *testing.T, link1, target1, link2, target2, fileName, dirName string) {
		var ents []zent
		if dirName != "" {
			ents = append(ents, dir(dirName))
		}
		if link1 != "" {
			ents = append(ents, link(link1, target1))
		}
		if link2 != "" {
			ents = append(ents, link(link2, target2))
		}
		if fileName != "" {
			ents = append(ents, file(fileName, "payload", 0o755))
		}
		checkExtract(t, buildZip(t, ents...))
	})
}

// checkExtract runs Extract in a fresh sandbox and checks that nothing
// escaped: the sandbox holds only the target (or nothing), every link in the
// target resolves inside it, modes are normalised and sizes within limits.
func checkExtract(t *testing.T, data []byte) {
	sandbox := t.TempDir()
	parent := filepath.Join(sandbox, "parent")
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(parent, "out")
	err := Extract(context.Background(), data, dst, fuzzLimits)
	assertOnlyChildren(t, sandbox, "parent")
	if err != nil {
		var ae *errdefs.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("non-API error %v", err)
		}
		assertOnlyChildren(t, parent)
		return
	}
	assertOnlyChildren(t, parent, "out")
	var total int64
	err = filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.Type() == fs.ModeSymlink:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				return fmt.Errorf("%s: absolute link %q", p, target)
			}
			if real, err := filepath.EvalSymlinks(p); err == nil && !within(dst, real) {
				return fmt.Errorf("%s resolves to %s, outside", p, real)
			}
		case m.IsDir():
			if m.Perm() != 0o755 {
				return fmt.Errorf("%s: dir mode %v", p, m)
			}
		case m.IsRegular():
			if m.Perm() != 0o644 && m.Perm() != 0o755 {
				return fmt.Errorf("%s: file mode %v", p, m)
			}
			total += info.Size()
		default:
			return fmt.Errorf("%s: unexpected type %v", p, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if total > fuzzLimits.MaxUnzipped {
		t.Fatalf("wrote %d bytes, limit %d", total, fuzzLimits.MaxUnzipped)
	}
}

func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("KILN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set KILN_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(fuzzName, seed string, data []byte) {
		dir := filepath.Join("testdata", "fuzz", fuzzName)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
		if err := os.WriteFile(filepath.Join(dir, seed), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	seeds := map[string][]byte{
		"valid": buildZip(t, dir("lib/"), file("bootstrap", "#!/bin/sh\n", 0o755), file("lib/a.so", "elf", 0o644),
			link("lib/b.so", "a.so"), noMode("handler.py", "def h(e, c): return e\n")),
		"links-inside": buildZip(t, dir("a/b/"), link("a/b/up", ".."), link("top", "a/b/up/b"), file("a/f", "f", 0o600)),
		"windows":      buildZip(t, noMode(`dir\sub\file.txt`, "x"), noMode("bootstrap", "y")),
		"empty":        buildZip(t),
	}
	for _, tc := range rejectCases() {
		if strings.Contains(tc.name, "too long") || strings.Contains(tc.name, "bomb") {
			continue // big seeds slow every plain test run
		}
		seeds["reject-"+strings.NewReplacer(" ", "-", "/", "_").Replace(tc.name)] = tc.zip(t)
	}
	seeds["small-bomb"] = buildZip(t, lyingBomb(t, "bomb", 100, 64<<10))
	for name, data := range seeds {
		write("FuzzInspect", name, data)
		write("FuzzExtract", name, data)
	}
	for i, e := range [][6]string{
		{"lib/libfoo.so", "libfoo.so.1", "current", "lib", "lib/libfoo.so.1", "lib/"},
		{"x/l1", "..", "l2", "x/l1/..", "f", ""},
		{"lib", "real", "", "", "lib/x", "real/"},
		{"a", "b", "b", "a", "c", ""},
		{"up", "../../etc/passwd", "", "", `..\evil`, ""},
		{"abs", "/etc/passwd", "d/e", "../d", "/tmp/x", "C:/"},
		{"./a/./b", "../b/../b", "a", "b", "b/c", "a/b/"},
	} {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, v := range e {
			fmt.Fprintf(&b, "string(%q)\n", v)
		}
		dir := filepath.Join("testdata", "fuzz", "FuzzExtractEntries")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
