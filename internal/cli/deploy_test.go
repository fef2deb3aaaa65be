package cli

import (
	"archive/zip"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadCode(t *testing.T) {
	dir := t.TempDir()
	fnDir := filepath.Join(dir, "fn")
	writeFile(t, fnDir, "app.py", "def handler(e, c): return e\n")
	writeFile(t, fnDir, "lib/util.py", "X = 1\n")
	zipBytes := mustZip(t)
	zipPath := writeFile(t, dir, "fn.zip", string(zipBytes))
	upperZip := writeFile(t, dir, "FN.ZIP", string(zipBytes))
	emptyZip := func() string {
		var b bytes.Buffer
		if err := zip.NewWriter(&b).Close(); err != nil {
			t.Fatal(err)
		}
		return writeFile(t, dir, "empty.zip", b.String())
	}()
	fakeZip := writeFile(t, dir, "fake.zip", "not a zip at all")
	tarball := writeFile(t, dir, "fn.tar.gz", "\x1f\x8b")
	noExt := writeFile(t, dir, "zipfile", string(zipBytes))
	if err := os.Symlink(fnDir, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		path      string
		wantFiles []string // for a directory: names in the produced zip
		wantSame  bool     // for a .zip: the bytes unchanged
		wantErr   string
	}{
		{name: "directory is zipped", path: fnDir, wantFiles: []string{"app.py", "lib/util.py"}},
		{name: "symlink to a directory is zipped", path: filepath.Join(dir, "link"), wantFiles: []string{"app.py", "lib/util.py"}},
		{name: ".zip is sent as is", path: zipPath, wantSame: true},
		{name: ".ZIP in capitals", path: upperZip, wantSame: true},
		{name: "empty zip", path: emptyZip},
		{name: ".zip that is not a zip", path: fakeZip, wantErr: "not a zip file"},
		{name: "other file type", path: tarball, wantErr: "want a directory or a .zip file"},
		{name: "zip content without .zip name", path: noExt, wantErr: "want a directory or a .zip file"},
		{name: "missing path", path: filepath.Join(dir, "nope"), wantErr: "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := loadCode(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantSame && !bytes.Equal(got, zipBytes) {
				t.Error("zip bytes changed")
			}
			if tt.wantFiles != nil {
				zr, err := zip.NewReader(bytes.NewReader(got), int64(len(got)))
				if err != nil {
					t.Fatalf("not a zip: %v", err)
				}
				have := map[string]bool{}
				for _, f := range zr.File {
					have[f.Name] = true
				}
				for _, want := range tt.wantFiles {
					if !have[want] {
						t.Errorf("zip lacks %s; has %v", want, have)
					}
				}
			}
		})
	}
}
