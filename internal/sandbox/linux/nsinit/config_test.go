package nsinit

import (
	"testing"
)

func TestEncodeDecode(t *testing.T) {
	c := &Config{Argv: []string{"/bin/sh", "-c", "echo"}, Env: []string{"A=b"}, RootDir: "/r",
		Mounts: []Mount{{FD: 4, Target: "/var/task", IsDir: true}}, TmpBytes: 1 << 20}
	b, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decode(string(b))
	if err != nil || got.Argv[2] != "echo" || got.Mounts[0].FD != 4 || got.TmpBytes != 1<<20 {
		t.Fatalf("decode = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "{", `{"argv":[]}`} {
		if _, err := decode(bad); err == nil {
			t.Errorf("decode(%q) accepted", bad)
		}
	}
	if p, err := decodePrep(`{"root_dir":"/r","hostname":"h"}`); err != nil || p.RootDir != "/r" {
		t.Errorf("decodePrep = %+v, %v", p, err)
	}
	for _, bad := range []string{"", `{}`, `{"root_dir":"/r","argv":["/x"]}`} {
		if _, err := decodePrep(bad); err == nil {
			t.Errorf("decodePrep(%q) accepted", bad)
		}
	}
}

func TestIsInitNeedsBothMarks(t *testing.T) {
	if IsInit() {
		t.Fatal("a test binary is not an init")
	}
	t.Setenv(EnvMarker, EnvValue)
	if IsInit() {
		t.Error("the environment alone made an init")
	}
}
