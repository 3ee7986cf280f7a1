package acme

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-acme/lego/v5/acme"
)

// Reasons returned by Reason, for a metric label.
const (
	ReasonRateLimited  = "rateLimited"  // the CA's rate limit
	ReasonUnauthorized = "unauthorized" // the CA refused: failed challenge, CAA, policy, account
	ReasonDNS          = "dns"          // a DNS problem: the CA's lookup, or DNS-01's record or propagation
	ReasonConnection   = "connection"   // the CA could not reach us, or we could not reach the CA
	ReasonBadCSR       = "badCSR"       // the CA refused the CSR (e.g. the key)
	ReasonOther        = "other"        // anything else
)

// problemReasons maps ACME problem types to reasons; unlisted types are
// ReasonOther.
var problemReasons = map[string]string{
	acme.RateLimitedErrorType:             ReasonRateLimited,
	acme.UnauthorizedErrorType:            ReasonUnauthorized,
	acme.IncorrectResponseErrorType:       ReasonUnauthorized,
	acme.CaaErrorType:                     ReasonUnauthorized,
	acme.RejectedIdentifierErrorType:      ReasonUnauthorized,
	acme.AccountDoesNotExistErrorType:     ReasonUnauthorized,
	acme.ExternalAccountRequiredErrorType: ReasonUnauthorized,
	acme.UserActionRequiredErrorType:      ReasonUnauthorized,
	acme.DNSErrorType:                     ReasonDNS,
	acme.ConnectionErrorType:              ReasonConnection,
	acme.TLSErrorType:                     ReasonConnection,
	acme.BadCSRErrorType:                  ReasonBadCSR,
}

// reasonRank orders reasons when one error holds several (an order for
// many hosts fails for each): the most telling wins.
var reasonRank = map[string]int{
	ReasonRateLimited:  6,
	ReasonBadCSR:       5,
	ReasonUnauthorized: 4,
	ReasonDNS:          3,
	ReasonConnection:   2,
	ReasonOther:        1,
}

// Reason classifies an error of this package (or of lego) for a metric
// label: one of the Reason* constants, or "" for a nil error. ACME problem
// documents decide first (a compound problem by its subproblems); then
// lego's DNS-01 errors and DNS lookups are "dns", and network errors and
// timeouts "connection".
func Reason(err error) string {
	if err == nil {
		return ""
	}
	best := ""
	walk(err, func(e error) {
		if p, ok := e.(*acme.ProblemDetails); ok && p != nil {
			best = better(best, problemReason(p))
		}
	})
	if best != "" {
		return best
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.As(err, &dnsErr), strings.Contains(err.Error(), "dns01: "):
		return ReasonDNS
	case errors.As(err, &netErr), errors.As(err, &urlErr),
		errors.Is(err, context.DeadlineExceeded):
		return ReasonConnection
	}
	return ReasonOther
}

// problemReason classifies one problem document; a compound one by the
// best of its subproblems.
func problemReason(p *acme.ProblemDetails) string {
	if r, ok := problemReasons[p.Type]; ok {
		return r
	}
	best := ""
	for _, sub := range p.SubProblems {
		r, ok := problemReasons[sub.Type]
		if !ok {
			r = ReasonOther
		}
		best = better(best, r)
	}
	if best == "" {
		return ReasonOther
	}
	return best
}

// better returns the higher ranked of two reasons.
func better(a, b string) string {
	if reasonRank[b] > reasonRank[a] {
		return b
	}
	return a
}

// walk calls fn on err and everything it wraps, single or joined.
func walk(err error, fn func(error)) {
	if err == nil {
		return
	}
	fn(err)
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), fn)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			walk(e, fn)
		}
	}
}

// RetryAfter returns the wait the CA asked for in a rate-limit answer
// (its Retry-After header), and whether it asked. Of several, the longest.
func RetryAfter(err error) (time.Duration, bool) {
	var d time.Duration
	walk(err, func(e error) {
		if rl, ok := e.(*acme.RateLimitedError); ok && rl != nil && rl.RetryAfter > d {
			d = rl.RetryAfter
		}
	})
	return d, d > 0
}

// Backoff bounds, see Backoff and RetryDelay.
const (
	MinBackoff    = time.Minute
	MaxBackoff    = 6 * time.Hour
	MaxRetryAfter = 7 * 24 * time.Hour
)

// Backoff is the wait before the next attempt after failures consecutive
// failures: none before the first failure, then one minute doubling up to
// six hours.
func Backoff(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	d := MinBackoff
	for i := 1; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// RetryDelay is Backoff(failures), or the CA's Retry-After in err when that
// is longer (capped at a week, against a nonsensical header).
func RetryDelay(failures int, err error) time.Duration {
	d := Backoff(failures)
	if ra, ok := RetryAfter(err); ok && ra > d {
		d = min(ra, MaxRetryAfter)
	}
	return d
}
