package haproxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/incuslb/incuslb/specs"
)

// Paths inside the HAProxy container.
const (
	ConfigPath   = "/etc/haproxy/haproxy.cfg"
	CertDir      = "/etc/haproxy/certs"
	AdminSocket  = "/run/haproxy/admin.sock"
	MasterSocket = "/run/haproxy-master.sock" // Debian's unit passes -S with this path
)

// Options are the few facts of the target that are not in the spec.
type Options struct {
	// CertDir is where certificates live in the container. Default CertDir;
	// tests point it at a temporary directory to run haproxy -c.
	CertDir string
	// Peers are the replicas of a pair, this one (LocalPeer) among them,
	// each at its own address: the rate limits' tables are shared between
	// them (see renderPeers). Without them, or with fewer than two, the
	// tables sync only to the next worker, through 127.0.0.1.
	Peers     []Peer
	LocalPeer string
}

// Peer is one replica of a pair in the peers section.
type Peer struct {
	Name    string // its instance name
	Address string // its own IPv4 address, "" when unknown
}

// CertPath is where the LoadBalancer's certificate lives in the container.
func CertPath(lb *specs.LoadBalancer, opts Options) string {
	return certDir(opts) + "/" + lb.Metadata.Name + ".pem"
}

// StatsAddr is the address (HOST:PORT, in the instance) of the stats
// frontend of a config Render wrote, or "" when it has none.
func StatsAddr(cfg []byte) string {
	for _, f := range sectionFields(cfg, "frontend stats") {
		if f[0] == "bind" && len(f) > 1 {
			return f[1]
		}
	}
	return ""
}

// sectionFields splits each non-empty line of the section whose header
// line is header (as Render writes it) into fields.
func sectionFields(cfg []byte, header string) [][]string {
	var out [][]string
	in := false
	for _, line := range strings.Split(string(cfg), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case !strings.HasPrefix(line, " "):
			in = strings.Join(f, " ") == header
		case in:
			out = append(out, f)
		}
	}
	return out
}

// Render writes haproxy.cfg for a defaulted, valid LoadBalancer with its
// selector pools' slots given by layout (a pool missing from layout has all
// its slots parked). It is pure and deterministic.
func Render(lb *specs.LoadBalancer, layout Layout, opts Options) []byte {
	w := &writer{}
	s := &lb.Spec
	d := &s.Defaults

	w.line("# haproxy.cfg for LoadBalancer %q, written by incuslb.", lb.Metadata.Name)
	w.line("# Do not edit: incuslb puts its own version back on its next pass.")
	w.section("global")
	w.line("    master-worker")
	// The config's own hash, read back from the worker with `show env`.
	w.line("%s%s", hashLinePrefix, hashPlaceholder)
	w.line("    log /dev/log local0")
	w.line("    log /dev/log local1 notice")
	// And into a ring in memory, which incuslb logs reads (see logring.go).
	w.line("    log ring@%s format iso local0 info", LogRing)
	w.line("    chroot /var/lib/haproxy")
	w.line("    user haproxy")
	w.line("    group haproxy")
	w.line("    stats socket %s mode 660 level admin expose-fd listeners", AdminSocket)
	w.line("    stats timeout 30s")
	// Old workers keep their sessions (WebSockets) this long at most.
	w.line("    hard-stop-after %s", hapDuration(d.HardStopAfter.Duration))
	if d.CloseSpreadTime.Duration > 0 {
		w.line("    close-spread-time %s", hapDuration(d.CloseSpreadTime.Duration))
	}
	w.line("    mworker-max-reloads 50")
	// A reload carries draining members over (see StateFile).
	w.line("    server-state-file %s", ServerStateFile)
	w.line("    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets")
	w.line("    ssl-default-server-options ssl-min-ver TLSv1.2")

	if hasRateLimits(s) {
		// The local peer the stick tables sync through at a reload.
		w.line("    localpeer %s", localPeer(opts))
	}

	w.section("defaults")
	w.line("    mode http")
	w.line("    log global")
	w.line("    option httplog")
	w.line("    option dontlognull")
	w.line("    option forwardfor")
	// Retry a failed connection on another server at once: a client pinned
	// to a dead server by its cookie is re-balanced, not failed.
	w.line("    option redispatch 1")
	w.line("    retries 3")
	// Also retry a request sent on a reused keep-alive connection that the
	// server closed (a member shutting down cleanly closes its idle
	// connections): only idempotent requests, see the frontend.
	w.line("    retry-on conn-failure empty-response")
	// At a reload the old worker does not close its idle keep-alive
	// connections (HAProxy 2.4+ does by default, and a client that writes
	// its next request as the close arrives gets an error it may not
	// retry): it answers their next request with "Connection: close", or
	// closes them after timeout http-keep-alive, so it outlives the reload
	// by that much at most.
	w.line("    option idle-close-on-response")
	w.line("    timeout connect %s", hapDuration(d.Timeouts.Connect.Duration))
	w.line("    timeout client %s", hapDuration(d.Timeouts.Client.Duration))
	w.line("    timeout server %s", hapDuration(d.Timeouts.Server.Duration))
	w.line("    timeout tunnel %s", hapDuration(d.Timeouts.Tunnel.Duration))
	w.line("    timeout http-request 10s")
	w.line("    timeout http-keep-alive 10s")
	// A static server whose name does not resolve starts in maintenance
	// instead of stopping HAProxy from starting.
	w.line("    default-server init-addr last,libc,none")

	renderLogRing(w)
	renderPeers(w, s, opts)

	w.section("frontend stats")
	w.line("    bind 127.0.0.1:%d", s.Stats.Port)
	w.line("    http-request set-log-level silent")
	w.line("    http-request use-service prometheus-exporter if { path /metrics }")
	w.line("    stats enable")
	w.line("    stats uri /stats")
	w.line("    stats refresh 10s")

	w.section("frontend main")
	bind(w, s, s.Frontend.HTTPPort, "")
	if t := s.Frontend.TLS; t != nil {
		bind(w, s, s.Frontend.HTTPSPort, "ssl crt-list "+CrtListPath(lb, opts)+" alpn h2,http/1.1")
		if t.ACME != nil {
			// ACME HTTP-01: the controller puts each token and its key
			// authorization into the map through the runtime API while
			// the CA checks it; answered before any redirect or route.
			token := "path,field(4,/),map(" + ACMEMapPath(lb, opts) + ")"
			w.line("    http-request return status 200 content-type text/plain lf-string \"%%[%s]\" if { path_beg %s } { %s -m found }",
				token, ACMEChallengePrefix, token)
		}
		if t.RedirectHTTP {
			w.line("    http-request redirect scheme https code 301 unless { ssl_fc }")
		}
		w.line("    http-request set-header X-Forwarded-Proto https if { ssl_fc }")
	}
	w.line("    http-request set-header X-Forwarded-Proto http unless { ssl_fc }")
	w.line("    http-request disable-l7-retry unless { method GET HEAD OPTIONS }")
	if t := s.Frontend.TLS; t != nil && t.HSTS != nil {
		w.line("    http-response set-header Strict-Transport-Security \"%s\" if { ssl_fc }", hstsValue(t.HSTS))
	}
	renderRouteHeaders(w, s.Routes)
	renderRouteRateLimits(w, s.Routes)
	for _, r := range s.Routes {
		conds := routeConds(r)
		if len(conds) == 0 {
			w.line("    default_backend %s", r.Pool)
			continue
		}
		w.line("    use_backend %s if %s", r.Pool, strings.Join(conds, " "))
	}

	for _, p := range s.Pools {
		if p.Mode != specs.ModeTCP {
			renderBackend(w, lb, &p, layout[p.Name], opts)
		}
	}
	renderRateTables(w, s)
	renderTCP(w, lb, layout)
	return sealHash(w.bytes(), SelectorPools(lb))
}

func renderBackend(w *writer, lb *specs.LoadBalancer, p *specs.Pool, slots []Slot, opts Options) {
	w.section("backend " + p.Name)
	if r := p.RateLimit; r != nil {
		writeRateLimit(w, r, 1, poolTable(p.Name), "")
	}
	switch p.Balance {
	case specs.BalanceURI:
		w.line("    balance uri whole")
		w.line("    hash-type consistent")
	default:
		w.line("    balance %s", p.Balance)
	}
	if p.Sticky != nil {
		w.line("    cookie %s insert indirect nocache dynamic", p.Sticky.Cookie)
		w.line("    dynamic-cookie-key %s", cookieKey(lb.Metadata.Name, p.Name))
	}
	if len(p.Selector) > 0 {
		w.line("    load-server-state-from-file global")
	}
	c := &p.HealthCheck
	if p.Mode == specs.ModeTCP {
		renderTCPCheck(w, p.TCPCheck)
	} else {
		w.line("    option httpchk")
		w.line("    http-check send meth GET uri %s ver HTTP/1.1 hdr Host %s", c.Path, c.Host)
		w.line("    http-check expect rstatus %s", c.ExpectStatus)
	}
	// With timeout check set, a check connects within timeout connect (not
	// within inter, HAProxy's default), then waits this long for the answer.
	checkTimeout := c.Interval.Duration
	if c.Timeout.Set {
		checkTimeout = c.Timeout.Duration
	}
	w.line("    timeout check %s", hapDuration(checkTimeout))

	def := fmt.Sprintf("    default-server inter %s", hapDuration(c.Interval.Duration))
	if c.FastInterval.Set {
		def += " fastinter " + hapDuration(c.FastInterval.Duration)
	}
	if c.DownInterval.Set {
		def += " downinter " + hapDuration(c.DownInterval.Duration)
	}
	def += fmt.Sprintf(" fall %d rise %d slowstart %s on-marked-down shutdown-sessions",
		c.Fall, c.Rise, hapDuration(p.SlowStart.Duration))
	switch p.ProxyProtocol {
	case "v1":
		def += " send-proxy"
	case "v2":
		def += " send-proxy-v2"
	}
	if p.BackendTLS != nil {
		def += backendTLSParams(lb, p, opts)
	}
	w.line("%s", def)

	if len(p.Servers) > 0 {
		for _, srv := range p.Servers {
			w.line("    server %s %s check", srv.Name, srv.Address)
		}
		return
	}
	n := max(p.Slots, len(slots))
	for i := 0; i < n; i++ {
		var s Slot
		if i < len(slots) {
			s = slots[i]
		}
		if s.Parked() {
			w.line("    server %s %s:%d check disabled", SlotName(i), ParkedAddress, ParkedPort)
			continue
		}
		w.line("    server %s %s check # %s", SlotName(i), s.Endpoint(), safeComment(s.Member))
	}
}

// cookieKey derives the dynamic-cookie-key of a pool. It only needs to be
// stable (so cookies survive reloads) and distinct per pool.
func cookieKey(lb, pool string) string {
	sum := sha256.Sum256([]byte("incuslb/dynamic-cookie-key/" + lb + "/" + pool))
	return hex.EncodeToString(sum[:8])
}

// safeComment keeps a member name to characters that cannot end the line.
func safeComment(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

// hapDuration writes d in the largest HAProxy unit that holds it exactly.
func hapDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return fmt.Sprintf("%dms", d/time.Millisecond)
}

type writer struct{ b strings.Builder }

func (w *writer) line(format string, args ...any) {
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func (w *writer) section(header string) {
	w.b.WriteByte('\n')
	w.b.WriteString(header)
	w.b.WriteByte('\n')
}

func (w *writer) bytes() []byte { return []byte(w.b.String()) }
