package acme

import (
	"hash/fnv"
	"time"
)

// RenewalWindow is the CA's suggested renewal window for a certificate
// (ARI, RFC 9773).
type RenewalWindow struct {
	// Start and End bound the window.
	Start, End time.Time
	// RetryAfter is when to ask again (the CA may move the window); zero
	// when the CA did not say.
	RetryAfter time.Duration
	// ExplanationURL, when set, explains the window (e.g. a revocation
	// event); worth showing to an operator.
	ExplanationURL string
}

// NextRenewal says when to renew c. Without an ARI window (or with an empty
// one) it is two thirds of the lifetime after NotBefore (day 60 of a
// 90-day certificate, day 4 of a 6-day one). With a window it is a point
// inside it, chosen from a hash of the serial: spread between certificates,
// yet the same for the same certificate and window, so a restart does not
// move it. The result is never before now: a time already past means renew
// now. A nil c also means now.
func NextRenewal(c *Certificate, now time.Time, ari *RenewalWindow) time.Time {
	if c == nil {
		return now
	}
	var at time.Time
	if ari != nil && ari.End.After(ari.Start) {
		at = ari.Start.Add(time.Duration(seed(c.Serial) % uint64(ari.End.Sub(ari.Start))))
	} else {
		at = c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
	}
	if at.Before(now) {
		return now
	}
	return at
}

// seed hashes a serial into a number for NextRenewal.
func seed(serial string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(serial))
	return h.Sum64()
}
