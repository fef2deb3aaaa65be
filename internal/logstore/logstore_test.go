package logstore

import (
	"fmt"
	"testing"
	"time"
)

func TestRing(t *testing.T) {
	now := time.Unix(100, 0)
	s := New(3, func() time.Time { return now })
	tests := []struct {
		add  []string
		n    int
		want []string
	}{
		{add: []string{"a"}, n: 10, want: []string{"a"}},
		{add: []string{"b", "c"}, n: 10, want: []string{"a", "b", "c"}},
		{add: []string{"d"}, n: 10, want: []string{"b", "c", "d"}},
		{add: nil, n: 2, want: []string{"c", "d"}},
	}
	for i, tt := range tests {
		s.Append("acct", "fn", tt.add...)
		got := s.Tail("acct", "fn", tt.n)
		if fmt.Sprint(messages(got)) != fmt.Sprint(tt.want) {
			t.Errorf("step %d: got %v want %v", i, messages(got), tt.want)
		}
	}
	if got := s.Tail("other", "fn", 10); len(got) != 0 {
		t.Errorf("another account sees %v", got)
	}
	s.Forget("acct", "fn")
	if got := s.Tail("acct", "fn", 10); len(got) != 0 {
		t.Errorf("after Forget: %v", got)
	}
}

func messages(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Message)
	}
	return out
}
