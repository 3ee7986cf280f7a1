package haproxy

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/incuslb/incuslb/specs"
)

// Rate limits: one stick table per limit (a backend of its own holding
// only the table), keyed by source, header or cookie, counting
// http_req_rate over the limit's window. A route's limit is tracked in the
// frontend as sc0 (only the first matching route's: txn.route), a pool's in
// its backend as sc1. Over the limit: 429 with Retry-After (the window).
// The tables are in the local peers section, so that a reload hands them
// to the new worker instead of starting from zero.

const peersName = "incuslb"

// namedLimit is a rate limit and the name of its table.
type namedLimit struct {
	table string
	limit *specs.RateLimit
}

// rateLimits lists the spec's limits, routes' first, in order.
func rateLimits(s *specs.LoadBalancerSpec) []namedLimit {
	var out []namedLimit
	for i, r := range s.Routes {
		if r.RateLimit != nil {
			out = append(out, namedLimit{routeTable(i), r.RateLimit})
		}
	}
	for _, p := range s.Pools {
		if p.RateLimit != nil {
			out = append(out, namedLimit{poolTable(p.Name), p.RateLimit})
		}
	}
	return out
}

func hasRateLimits(s *specs.LoadBalancerSpec) bool { return len(rateLimits(s)) > 0 }

// RateTables names the rate limits' tables of a LoadBalancer.
func RateTables(s *specs.LoadBalancerSpec) []string {
	var out []string
	for _, l := range rateLimits(s) {
		out = append(out, l.table)
	}
	return out
}

// renderPeers writes the peers section the tables sync through: this
// instance alone on 127.0.0.1 (to the next worker at a reload), or every
// replica of a pair at its own address, so that a client's count follows
// the virtual address. The peers protocol has no authentication: the port
// is open on the instances' network (the pair's own bridge).
func renderPeers(w *writer, s *specs.LoadBalancerSpec, opts Options) {
	if !hasRateLimits(s) {
		return
	}
	w.section("peers " + peersName)
	if !paired(opts) {
		w.line("    peer %s 127.0.0.1:%d", peersName, specs.PeersPort)
		return
	}
	for _, p := range opts.Peers {
		w.line("    peer %s %s", p.Name, net.JoinHostPort(p.Address, strconv.Itoa(specs.PeersPort)))
	}
}

// paired reports whether opts names a pair's peers, this one among them,
// each with an address.
func paired(opts Options) bool {
	local := false
	for _, p := range opts.Peers {
		if p.Address == "" {
			return false
		}
		local = local || p.Name == opts.LocalPeer
	}
	return local && len(opts.Peers) > 1
}

func localPeer(opts Options) string {
	if paired(opts) {
		return opts.LocalPeer
	}
	return peersName
}

// ParsePeers reads the replicas' addresses back from a config Render
// wrote: name → address.
func ParsePeers(cfg []byte) map[string]string {
	out := map[string]string{}
	for _, f := range sectionFields(cfg, "peers "+peersName) {
		if len(f) == 3 && f[0] == "peer" && f[1] != peersName {
			if host, _, err := net.SplitHostPort(f[2]); err == nil {
				out[f[1]] = host
			}
		}
	}
	return out
}

func routeTable(i int) string      { return fmt.Sprintf("rl_route_%d", i) }
func poolTable(name string) string { return "rl_pool_" + name }

// renderRateTables writes the tables' backends.
func renderRateTables(w *writer, s *specs.LoadBalancerSpec) {
	for _, l := range rateLimits(s) {
		r := l.limit
		w.section("backend " + l.table)
		typ := "ipv6"
		if kind, _ := r.Key(); kind != specs.RateLimitBySource {
			typ = "string len 128"
		}
		per := hapDuration(r.Per.Duration)
		w.line("    stick-table type %s size 1m expire %s store http_req_rate(%s) peers %s", typ, per, per, peersName)
	}
}

// rateKey is the sample a limit tracks.
func rateKey(r *specs.RateLimit) string {
	switch kind, name := r.Key(); kind {
	case "header":
		return "req.hdr(" + name + ")"
	case "cookie":
		return "req.cook(" + name + ")"
	}
	return "src"
}

// writeRateLimit tracks the request in counter sc of table, unless its
// source is allowed, under cond, and answers 429 over the limit.
func writeRateLimit(w *writer, r *specs.RateLimit, sc int, table, cond string) {
	track := cond
	if len(r.Allow) > 0 {
		track = strings.TrimSpace(track + " !{ src " + strings.Join(r.Allow, " ") + " }")
	}
	if track != "" {
		track = " if " + track
	}
	w.line("    http-request track-sc%d %s table %s%s", sc, rateKey(r), table, track)
	over := fmt.Sprintf("{ sc_http_req_rate(%d,%s) gt %d }", sc, table, r.Requests+r.Burst)
	if cond != "" {
		over = cond + " " + over
	}
	w.line("    http-request return status 429 content-type text/plain string \"Too Many Requests\" hdr Retry-After %d if %s",
		int64(r.Per.Duration/time.Second), over)
}

// renderRouteRateLimits writes the routes' limits (after txn.route is set).
func renderRouteRateLimits(w *writer, routes []specs.Route) {
	for i, r := range routes {
		if r.RateLimit != nil {
			writeRateLimit(w, r.RateLimit, 0, routeTable(i), fmt.Sprintf("{ var(txn.route) -m int %d }", i))
		}
	}
}
