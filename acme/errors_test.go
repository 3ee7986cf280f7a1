package acme

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme"
)

// problem builds a lego problem document of type typ.
func problem(typ string, status int) *acme.ProblemDetails {
	return &acme.ProblemDetails{Type: typ, HTTPStatus: status, Detail: "detail"}
}

// TestReason classifies errors shaped as lego returns them.
func TestReason(t *testing.T) {
	rateLimited := &acme.RateLimitedError{ProblemDetails: problem(acme.RateLimitedErrorType, 429), RetryAfter: time.Hour}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"rate limited (typed)", rateLimited, ReasonRateLimited},
		{"rate limited, wrapped", fmt.Errorf("acme: obtain web: %w", rateLimited), ReasonRateLimited},
		{"rate limited (plain problem)", problem(acme.RateLimitedErrorType, 429), ReasonRateLimited},
		{"unauthorized", problem(acme.UnauthorizedErrorType, 403), ReasonUnauthorized},
		{"incorrect response", problem(acme.IncorrectResponseErrorType, 403), ReasonUnauthorized},
		{"CAA", problem(acme.CaaErrorType, 403), ReasonUnauthorized},
		{"rejected identifier", problem(acme.RejectedIdentifierErrorType, 400), ReasonUnauthorized},
		{"account does not exist", problem(acme.AccountDoesNotExistErrorType, 400), ReasonUnauthorized},
		{"EAB required", problem(acme.ExternalAccountRequiredErrorType, 400), ReasonUnauthorized},
		{"dns", problem(acme.DNSErrorType, 400), ReasonDNS},
		{"connection", problem(acme.ConnectionErrorType, 400), ReasonConnection},
		{"tls", problem(acme.TLSErrorType, 400), ReasonConnection},
		{"bad CSR", problem(acme.BadCSRErrorType, 400), ReasonBadCSR},
		{"malformed", problem(acme.MalformedErrorType, 400), ReasonOther},
		{"server internal", problem(acme.ServerInternalErrorType, 500), ReasonOther},
		{"bad nonce (typed)", &acme.NonceError{ProblemDetails: problem(acme.BadNonceErrorType, 400)}, ReasonOther},
		{"challenge invalid, as lego wraps it",
			fmt.Errorf("acme: obtain web: %w", fmt.Errorf("invalid challenge: %w", problem(acme.ConnectionErrorType, 400))),
			ReasonConnection},
		{"compound by its subproblems", &acme.ProblemDetails{Type: acme.CompoundErrorType, SubProblems: []acme.SubProblem{
			{Type: acme.MalformedErrorType}, {Type: acme.DNSErrorType},
		}}, ReasonDNS},
		{"compound of unknowns", &acme.ProblemDetails{Type: acme.CompoundErrorType}, ReasonOther},
		{"several domains: the most telling", errors.Join(
			problem(acme.ConnectionErrorType, 400), problem(acme.UnauthorizedErrorType, 403), errors.New("x")),
			ReasonUnauthorized},
		{"several domains: rate limit wins", errors.Join(problem(acme.BadCSRErrorType, 400), rateLimited), ReasonRateLimited},
		{"lego DNS-01 propagation", errors.New("dns01: time limit exceeded: last error: NS a.example did not return the expected TXT record"), ReasonDNS},
		{"DNS lookup", fmt.Errorf("x: %w", &net.DNSError{Err: "no such host", Name: "ca.example"}), ReasonDNS},
		{"CA unreachable", &url.Error{Op: "Get", URL: "https://ca.example/dir", Err: errors.New("connection refused")}, ReasonConnection},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), ReasonConnection},
		{"anything else", errors.New("http01: error presenting token"), ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Reason(tt.err); got != tt.want {
				t.Fatalf("Reason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

// TestRetryAfter reads the CA's Retry-After from a rate-limit error.
func TestRetryAfter(t *testing.T) {
	rl := func(d time.Duration) error {
		return &acme.RateLimitedError{ProblemDetails: problem(acme.RateLimitedErrorType, 429), RetryAfter: d}
	}
	tests := []struct {
		name string
		err  error
		want time.Duration
		ok   bool
	}{
		{"nil", nil, 0, false},
		{"rate limited with Retry-After", fmt.Errorf("obtain: %w", rl(3*time.Hour)), 3 * time.Hour, true},
		{"rate limited without Retry-After", rl(0), 0, false},
		{"plain rate-limit problem", problem(acme.RateLimitedErrorType, 429), 0, false},
		{"several: the longest", errors.Join(rl(time.Minute), rl(time.Hour)), time.Hour, true},
		{"other error", errors.New("x"), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := RetryAfter(tt.err)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("RetryAfter = %v, %v; want %v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// TestBackoff checks the doubling and its bounds.
func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{-1, 0}, {0, 0}, {1, time.Minute}, {2, 2 * time.Minute}, {3, 4 * time.Minute},
		{9, 256 * time.Minute}, {10, 6 * time.Hour}, {11, 6 * time.Hour}, {1000, 6 * time.Hour},
	}
	for _, tt := range tests {
		if got := Backoff(tt.failures); got != tt.want {
			t.Errorf("Backoff(%d) = %v, want %v", tt.failures, got, tt.want)
		}
	}
	prev := time.Duration(0)
	for f := 1; f < 100; f++ {
		d := Backoff(f)
		if d < prev || d < MinBackoff || d > MaxBackoff {
			t.Fatalf("Backoff(%d) = %v after %v: not monotone within [%v, %v]", f, d, prev, MinBackoff, MaxBackoff)
		}
		prev = d
	}
}

// TestRetryDelay checks that the CA's Retry-After wins only when longer.
func TestRetryDelay(t *testing.T) {
	rl := func(d time.Duration) error {
		return &acme.RateLimitedError{ProblemDetails: problem(acme.RateLimitedErrorType, 429), RetryAfter: d}
	}
	tests := []struct {
		name     string
		failures int
		err      error
		want     time.Duration
	}{
		{"no Retry-After", 3, errors.New("x"), 4 * time.Minute},
		{"Retry-After longer", 1, rl(2 * time.Hour), 2 * time.Hour},
		{"Retry-After shorter", 10, rl(time.Hour), 6 * time.Hour},
		{"Retry-After beyond a week", 1, rl(30 * 24 * time.Hour), MaxRetryAfter},
	}
	for _, tt := range tests {
		if got := RetryDelay(tt.failures, tt.err); got != tt.want {
			t.Errorf("%s: RetryDelay = %v, want %v", tt.name, got, tt.want)
		}
	}
}
