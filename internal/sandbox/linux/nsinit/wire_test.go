package nsinit

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// readWire splits a message the way the C init reads it: a magic, then
// ops with NUL-terminated fields; 'F' carries a length and raw bytes. It
// returns each op with its fields.
func readWire(t *testing.T, b []byte, fields map[byte]int) (string, [][]string) {
	t.Helper()
	next := func() string {
		i := bytes.IndexByte(b, 0)
		if i < 0 {
			t.Fatalf("unterminated field in %q", b)
		}
		s := string(b[:i])
		b = b[i+1:]
		return s
	}
	magic := next()
	var ops [][]string
	for len(b) > 0 {
		op := next()
		if len(op) != 1 {
			t.Fatalf("bad op %q", op)
		}
		rec := []string{op}
		switch op[0] {
		case 'A', 'E':
			n, err := strconv.Atoi(next())
			if err != nil {
				t.Fatal(err)
			}
			for range n {
				rec = append(rec, next())
			}
		case 'F':
			n, err := strconv.Atoi(next())
			if err != nil || n > len(b) {
				t.Fatalf("bad filter length %d", n)
			}
			rec = append(rec, string(b[:n]))
			b = b[n:]
		default:
			n, ok := fields[op[0]]
			if !ok {
				t.Fatalf("unknown op %q", op)
			}
			for range n {
				rec = append(rec, next())
			}
		}
		ops = append(ops, rec)
	}
	return magic, ops
}

func TestEncodePrepC(t *testing.T) {
	b, err := EncodePrepC(&Config{RootDir: "/run/root", Hostname: "h", NoFile: 1024, ResolvConf: "nameserver 1.1.1.1\n"}, false)
	if err != nil {
		t.Fatal(err)
	}
	magic, ops := readWire(t, b, map[byte]int{'S': 0, 'T': 3, 'B': 3, 'V': 2, 'L': 2, 'M': 2, 'W': 2, 'P': 1, 'H': 1, 'N': 1, 'R': 1, 'C': 0})
	if magic != "KP1" {
		t.Fatalf("magic %q", magic)
	}
	var order []string
	for _, o := range ops {
		order = append(order, o[0])
		for _, f := range o[1:] {
			if o[0] != "W" && o[0] != "L" && strings.HasPrefix(f, "/") && !strings.HasPrefix(f, "/run/root") &&
				o[0] != "B" && o[0] != "V" {
				t.Errorf("op %v writes outside the root", o)
			}
		}
	}
	got := strings.Join(order, "")
	// Private mounts first, a tmpfs root, pivot then the privilege drop last.
	if !strings.HasPrefix(got, "ST") || !strings.HasSuffix(got, "RC") {
		t.Errorf("steps %s", got)
	}
	b, err = EncodePrepC(&Config{RootDir: "/run/root"}, true)
	if err != nil {
		t.Fatal(err)
	}
	_, ops = readWire(t, b, map[byte]int{'S': 0, 'T': 3, 'B': 3, 'V': 2, 'L': 2, 'M': 2, 'W': 2, 'P': 1, 'H': 1, 'N': 1, 'R': 1, 'C': 0, 'K': 0})
	if n := len(ops); n < 3 || ops[n-3][0] != "C" || ops[n-2][0] != "F" || len(ops[n-2][1]) != 8*len(Filter()) || ops[n-1][0] != "K" {
		t.Errorf("prefork steps end with %v", ops[len(ops)-3:])
	}
	if _, err := EncodePrepC(&Config{RootDir: "relative"}, false); err == nil {
		t.Error("relative root accepted")
	}
}

func TestEncodeClaimC(t *testing.T) {
	c := &Config{Argv: []string{"/var/task/bootstrap", "a b"}, Env: []string{"A=1"}, Dir: "/var/task", TmpBytes: 8 << 20,
		Mounts: []Mount{{FD: 3, Target: "/var/task", IsDir: true}, {FD: 4, Target: "/etc/x"}}}
	b, err := EncodeClaimC(c)
	if err != nil {
		t.Fatal(err)
	}
	magic, ops := readWire(t, b, map[byte]int{'D': 1, 'T': 1, 'm': 3, 'U': 2})
	if magic != "KC1" {
		t.Fatalf("magic %q", magic)
	}
	want := map[string][]string{
		"A": {"A", "/var/task/bootstrap", "a b"}, "E": {"E", "A=1"}, "D": {"D", "/var/task"},
		"T": {"T", "size=8388608,mode=1777"}, "U": {"U", "993", "990"},
	}
	var mounts, filters int
	for _, o := range ops {
		switch o[0] {
		case "m":
			mounts++
		case "F":
			filters++
			if len(o[1])%8 != 0 || len(o[1])/8 != len(Filter()) {
				t.Errorf("filter of %d bytes for %d instructions", len(o[1]), len(Filter()))
			}
		default:
			if w := want[o[0]]; strings.Join(w, "|") != strings.Join(o, "|") {
				t.Errorf("op %v, want %v", o, w)
			}
		}
	}
	if mounts != 2 || filters != 1 {
		t.Errorf("%d mounts, %d filters", mounts, filters)
	}
	for _, bad := range []*Config{
		{Argv: []string{"rel"}},
		{Argv: []string{"/x\x00y"}},
		{Argv: []string{"/x"}, Env: []string{"A=\x00"}},
		{Argv: []string{"/x"}, Mounts: []Mount{{FD: 3, Target: "/"}}},
		{Argv: []string{"/x"}, Mounts: []Mount{{FD: 1, Target: "/a"}}},
		{Argv: []string{"/x"}, Mounts: []Mount{{FD: 3, Target: "/a/../b"}}},
	} {
		if _, err := EncodeClaimC(bad); err == nil {
			t.Errorf("EncodeClaimC(%+v) accepted", bad)
		}
	}
}

func FuzzParseMarks(f *testing.F) {
	for _, s := range []string{"wake=1 cgroupns=2 exec=3", "x", "a=b", "=1", "a=-5 b=99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range ParseMarks(strings.Fields(s)) {
			if !strings.Contains(s, m.Name+"=") {
				t.Fatalf("mark %+v not in %q", m, s)
			}
		}
	})
}
