package tenant

import (
	"context"
	"testing"
)

func TestAccount(t *testing.T) {
	tests := []struct {
		name   string
		ctx    context.Context
		want   string
		wantOK bool
	}{
		{"absent", context.Background(), "", false},
		{"empty", WithAccount(context.Background(), ""), "", false},
		{"set", WithAccount(context.Background(), "123456789012"), "123456789012", true},
		{"innermost wins", WithAccount(WithAccount(context.Background(), "111111111111"), "222222222222"), "222222222222", true},
		{"other key of same type ignored", context.WithValue(context.Background(), struct{ x int }{}, "999999999999"), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Account(tt.ctx)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("Account() = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}
