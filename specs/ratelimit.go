package specs

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// RateLimit caps the requests of each client (by source address, a header
// or a cookie) over a sliding window: at most requests+burst in any window
// of per; over it, 429 with Retry-After. Built on HAProxy stick tables,
// whose counts are kept across reloads (through the local peer, or carried
// by the controller where HAProxy does not) and shared by a pair's
// replicas through peers. A refused request counts too: a client that
// keeps retrying stays limited.
type RateLimit struct {
	// Requests allowed per window.
	Requests int `json:"requests"`
	// Per is the window, from 1s to 24h.
	Per Duration `json:"per"`
	// By is what a client is: source (default, its address), header:NAME
	// (e.g. header:Authorization) or cookie:NAME. A request without that
	// header or cookie is not limited.
	By string `json:"by,omitempty"`
	// Burst is how many more requests a window may take. Default 0.
	Burst int `json:"burst,omitempty"`
	// Allow lists sources (addresses or CIDR prefixes) never limited.
	Allow []string `json:"allow,omitempty"`
}

// Rate-limit bounds.
const (
	RateLimitBySource = "source"
	maxRateRequests   = 1_000_000
	maxRateAllow      = 64
	minRatePer        = time.Second
	maxRatePer        = 24 * time.Hour
	PeersPort         = 10000 // 127.0.0.1 in the LB: the stick tables' local peer
)

// Key is the stick-table key kind and what it is read from: "source",
// "header" or "cookie", and the header or cookie name.
func (r *RateLimit) Key() (kind, name string) {
	if r.By == "" || r.By == RateLimitBySource {
		return RateLimitBySource, ""
	}
	kind, name, _ = strings.Cut(r.By, ":")
	return kind, name
}

func validateRateLimit(e *errs, path string, r *RateLimit) {
	if r == nil {
		return
	}
	if r.Requests < 1 || r.Requests > maxRateRequests {
		e.add(path+".requests", "must be between 1 and %d, not %d", maxRateRequests, r.Requests)
	}
	if r.Burst < 0 || r.Burst > maxRateRequests {
		e.add(path+".burst", "must be between 0 and %d, not %d", maxRateRequests, r.Burst)
	}
	if d := r.Per.Duration; d < minRatePer || d > maxRatePer || d%time.Second != 0 {
		e.add(path+".per", "must be whole seconds from 1s to 24h, not %q", r.Per.String())
	}
	switch kind, name := r.Key(); {
	case kind == RateLimitBySource:
	case (kind == "header" || kind == "cookie") && headerNameRE.MatchString(name):
	default:
		e.add(path+".by", "must be source, header:NAME or cookie:NAME, not %q", r.By)
	}
	if len(r.Allow) > maxRateAllow {
		e.add(path+".allow", "at most %d entries, not %d", maxRateAllow, len(r.Allow))
		return
	}
	for i, a := range r.Allow {
		if _, err := netip.ParsePrefix(a); err != nil {
			if _, err := netip.ParseAddr(a); err != nil {
				e.add(fmt.Sprintf("%s.allow[%d]", path, i), "must be an address or a CIDR prefix, not %q", a)
			}
		}
	}
}
