package codepkg

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"hash/crc32"
	"io/fs"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// zent describes one member of a zip built in a test.
type zent struct {
	name string
	body string
	// mode is the Unix mode to store; 0 stores none, like Windows tools.
	mode fs.FileMode
	// raw, when set, is written with CreateRaw as is (crafted headers).
	raw *zip.FileHeader
	// rawData is the already-compressed data for raw.
	rawData []byte
}

func file(name, body string, perm fs.FileMode) zent { return zent{name: name, body: body, mode: perm} }
func dir(name string) zent                          { return zent{name: name, mode: fs.ModeDir | 0o755} }
func link(name, target string) zent {
	return zent{name: name, body: target, mode: fs.ModeSymlink | 0o777}
}
func noMode(name, body string) zent { return zent{name: name, body: body} }

func buildZip(t testing.TB, ents ...zent) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range ents {
		if e.raw != nil {
			w, err := zw.CreateRaw(e.raw)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(e.rawData); err != nil {
				t.Fatal(err)
			}
			continue
		}
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		if e.mode != 0 {
			h.SetMode(e.mode)
		}
		if e.mode&fs.ModeSymlink != 0 || e.mode.IsDir() {
			h.Method = zip.Store
		}
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.name, "/") {
			continue // archive/zip refuses data for directory-like names
		}
		if _, err := w.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deflate(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	fw.Close()
	return buf.Bytes()
}

// lyingBomb is a Deflate entry whose headers claim declared bytes but whose
// stream inflates to actual bytes of zeros.
func lyingBomb(t testing.TB, name string, declared uint64, actual int) zent {
	data := make([]byte, actual)
	comp := deflate(t, data)
	h := &zip.FileHeader{
		Name:               name,
		Method:             zip.Deflate,
		CRC32:              crc32.ChecksumIEEE(data[:min(int(declared), actual)]),
		CompressedSize64:   uint64(len(comp)),
		UncompressedSize64: declared,
	}
	h.SetMode(0o644)
	return zent{raw: h, rawData: comp}
}

// storedLiar is a Store entry whose header claims fewer bytes than it holds.
func storedLiar(name string, declared uint64, actual []byte) zent {
	h := &zip.FileHeader{
		Name:               name,
		Method:             zip.Store,
		CRC32:              crc32.ChecksumIEEE(actual),
		CompressedSize64:   uint64(len(actual)),
		UncompressedSize64: declared,
	}
	h.SetMode(0o644)
	return zent{raw: h, rawData: actual}
}

func apiErr(t testing.TB, err error) *errdefs.APIError {
	t.Helper()
	var ae *errdefs.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not an *errdefs.APIError", err, err)
	}
	return ae
}
