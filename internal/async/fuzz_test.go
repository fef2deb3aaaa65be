package async

import (
	"testing"

	"github.com/nats-io/nats.go"
)

func FuzzDecodeEvent(f *testing.F) {
	f.Add("req", "123456789012", "f", "", "1700000000000", "", "", []byte(`{}`))
	f.Add("req", "123456789012", "f", "prod", "1700000000000", "2", "1700000060000", []byte(`x`))
	f.Add("", "", "", "", "-1", "x", "y", []byte(nil))
	f.Fuzz(func(t *testing.T, id, account, fn, q, accepted, attempts, notBefore string, data []byte) {
		h := nats.Header{}
		h.Set(hRequestID, id)
		h.Set(hAccount, account)
		h.Set(hFunction, fn)
		h.Set(hQualifier, q)
		h.Set(hAccepted, accepted)
		h.Set(hAttempts, attempts)
		h.Set(hNotBefore, notBefore)
		ev, err := decodeEvent(h, data)
		if err != nil {
			return
		}
		if ev.AcceptedMs <= 0 || ev.Attempts < 0 || ev.RequestID == "" {
			t.Fatalf("accepted a bad event: %+v", ev)
		}
		back, err := decodeEvent(ev.msg("kiln.ev.x").Header, data)
		if err != nil || back.RequestID != ev.RequestID || back.Attempts != ev.Attempts || back.AcceptedMs != ev.AcceptedMs {
			t.Fatalf("round trip: %+v %v", back, err)
		}
	})
}

func FuzzParseDestination(f *testing.F) {
	for _, s := range []string{
		"arn:aws:lambda:us-east-1:123456789012:function:f",
		"arn:aws:lambda:us-east-1:123456789012:function:f:prod",
		"arn:aws:sqs:us-east-1:123456789012:q",
		"arn:aws:sns:us-east-1:123456789012:t",
		"arn::::::",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseDestination(s)
		if err != nil {
			return
		}
		if !isAccount(d.account) || d.name == "" || (d.kind == destQueue && !validQueueName(d.name)) {
			t.Fatalf("accepted %q as %+v", s, d)
		}
	})
}
