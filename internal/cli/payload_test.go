package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadPayload(t *testing.T) {
	big := strings.Repeat("x", maxPayload+1)
	tests := []struct {
		name    string
		arg     string
		hasArg  bool
		stdin   func() *strings.Reader
		want    string
		wantErr string
	}{
		{name: "default", want: "{}"},
		{name: "argument as is", arg: ` {"a": [1, 2]} `, hasArg: true, want: ` {"a": [1, 2]} `},
		{name: "empty argument", arg: "", hasArg: true, want: ""},
		{name: "not JSON is the server's call", arg: "hello", hasArg: true, want: "hello"},
		{name: "stdin", arg: "-", hasArg: true, stdin: func() *strings.Reader { return strings.NewReader("{\"k\":\"v\"}\n") }, want: "{\"k\":\"v\"}\n"},
		{name: "empty stdin", arg: "-", hasArg: true, stdin: func() *strings.Reader { return strings.NewReader("") }, want: ""},
		{name: "no stdin", arg: "-", hasArg: true, wantErr: "no stdin"},
		{name: "stdin too large", arg: "-", hasArg: true, stdin: func() *strings.Reader { return strings.NewReader(big) }, wantErr: "larger than 6291456 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			var err error
			if tt.stdin != nil {
				got, err = readPayload(tt.arg, tt.hasArg, tt.stdin())
			} else {
				got, err = readPayload(tt.arg, tt.hasArg, nil)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := readPayload("-", true, iotest.ErrReader(boom)); !errors.Is(err, boom) {
		t.Errorf("read error = %v, want it wrapped", err)
	}
}

func TestWriteLine(t *testing.T) {
	for in, want := range map[string]string{"": "", "{}": "{}\n", "{}\n": "{}\n", "a\n\n": "a\n\n"} {
		var b bytes.Buffer
		writeLine(&b, in)
		if b.String() != want {
			t.Errorf("writeLine(%q) = %q, want %q", in, b.String(), want)
		}
	}
}
