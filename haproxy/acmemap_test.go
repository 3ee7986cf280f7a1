package haproxy

import (
	"context"
	"strings"
	"testing"
)

// recorder is a Socket that answers every command with answer and keeps
// what it was sent.
type recorder struct {
	sent   []string
	answer string
}

func (r *recorder) Exchange(_ context.Context, payload string) (string, error) {
	r.sent = append(r.sent, payload)
	return r.answer, nil
}

// TestACMETokens: a token goes in as del map then add map, and comes out
// with del map; anything but base64url and '.' (a CA's answer is
// untrusted) is refused before a command is sent.
func TestACMETokens(t *testing.T) {
	const m = "/etc/haproxy/certs/lb.acme-challenge.map"
	rec := &recorder{}
	rt := &Runtime{Admin: rec}
	if err := rt.AddACMEToken(context.Background(), m, "tok-EN_1", "tok-EN_1.thumb_print"); err != nil {
		t.Fatal(err)
	}
	if err := rt.DelACMEToken(context.Background(), m, "tok-EN_1"); err != nil {
		t.Fatal(err)
	}
	want := []string{"del map " + m + " tok-EN_1", "add map " + m + " tok-EN_1 tok-EN_1.thumb_print", "del map " + m + " tok-EN_1"}
	for i, w := range want {
		if i >= len(rec.sent) || strings.TrimSpace(rec.sent[i]) != w {
			t.Fatalf("sent %q, want %q", rec.sent, want)
		}
	}
	for _, bad := range []struct{ token, keyAuth string }{
		{"a;show sess", "x"}, {"a\nshutdown sessions", "x"}, {"a b", "x"}, {"", "x"},
		{"tok", "x y"}, {"tok", "x;y"}, {strings.Repeat("a", 300), "x"}, {"tok", ""},
	} {
		rec.sent = nil
		if err := rt.AddACMEToken(context.Background(), m, bad.token, bad.keyAuth); err == nil || len(rec.sent) > 0 {
			t.Errorf("%q %q: err %v, sent %q", bad.token, bad.keyAuth, err, rec.sent)
		}
	}
	rec.answer = "Key not found.\n"
	if err := rt.DelACMEToken(context.Background(), m, "gone"); err != nil {
		t.Errorf("a missing token: %v", err)
	}
	rec.answer = "Unknown map identifier. Please use #<id> or <file>.\n"
	if err := rt.DelACMEToken(context.Background(), m, "tok"); err == nil {
		t.Error("an unknown map is an error")
	}
}
