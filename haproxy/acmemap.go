package haproxy

import (
	"context"
	"fmt"
	"strings"
)

// ACME HTTP-01 tokens in the running HAProxy (see ACMEMapPath): put and
// taken out with `add map` and `del map`, no reload. A token and its key
// authorization come from the CA over the network, so they are checked to
// be base64url (plus the '.' between token and thumbprint) before they go
// into a runtime command: nothing else can be smuggled into it.

// maxACMEToken bounds a token or a key authorization (RFC 8555 tokens are
// 43 characters; key authorizations 87).
const maxACMEToken = 256

// validACMEWord reports whether s is 1 to maxACMEToken characters of
// base64url and '.'.
func validACMEWord(s string) bool {
	if s == "" || len(s) > maxACMEToken {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// AddACMEToken makes HAProxy answer GET /.well-known/acme-challenge/TOKEN
// with keyAuth, replacing an earlier value for the same token.
func (r *Runtime) AddACMEToken(ctx context.Context, mapPath, token, keyAuth string) error {
	if !validACMEWord(token) || !validACMEWord(keyAuth) {
		return fmt.Errorf("ACME token or key authorization is not base64url (refused before HAProxy)")
	}
	_ = r.DelACMEToken(ctx, mapPath, token) // add map would keep both values
	return r.expectEmpty(ctx, "add map "+mapPath+" "+token+" "+keyAuth)
}

// DelACMEToken takes the token out; one that is not there is no error.
func (r *Runtime) DelACMEToken(ctx context.Context, mapPath, token string) error {
	if !validACMEWord(token) {
		return fmt.Errorf("ACME token is not base64url (refused before HAProxy)")
	}
	out, err := r.Command(ctx, "del map "+mapPath+" "+token)
	if err != nil {
		return err
	}
	if o := strings.TrimSpace(out); o != "" && !strings.Contains(o, "not found") {
		return fmt.Errorf("del map %s: %s", mapPath, o)
	}
	return nil
}
