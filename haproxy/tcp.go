package haproxy

import (
	"slices"
	"strings"

	"github.com/incuslb/incuslb/specs"
)

// renderTCP writes the TCP side, last: a defaults section in mode tcp
// (every section after it takes it, so nothing of the HTTP defaults, such
// as forwardfor or httplog, applies), a frontend per TCP listener, and the
// tcp pools' backends.
func renderTCP(w *writer, lb *specs.LoadBalancer, layout Layout) {
	s := &lb.Spec
	if len(s.TCP) == 0 && !slices.ContainsFunc(s.Pools, func(p specs.Pool) bool { return p.Mode == specs.ModeTCP }) {
		return
	}
	d := &s.Defaults
	w.section("defaults tcp")
	w.line("    mode tcp")
	w.line("    log global")
	w.line("    option tcplog")
	w.line("    option dontlognull")
	w.line("    option redispatch 1")
	w.line("    retries 3")
	w.line("    timeout connect %s", hapDuration(d.Timeouts.Connect.Duration))
	w.line("    timeout client %s", hapDuration(d.Timeouts.Tunnel.Duration))
	w.line("    timeout server %s", hapDuration(d.Timeouts.Tunnel.Duration))
	w.line("    default-server init-addr last,libc,none")
	for _, l := range s.TCP {
		w.section("frontend tcp_" + l.Name)
		bind(w, s, l.Port, "")
		w.line("    default_backend %s", l.Pool)
	}
	for _, p := range s.Pools {
		if p.Mode == specs.ModeTCP {
			renderBackend(w, lb, &p, layout[p.Name], Options{}) // no backendTLS in mode tcp: no paths
		}
	}
}

// renderTCPCheck writes a tcp pool's check: a connect, or send/expect.
func renderTCPCheck(w *writer, c *specs.TCPCheck) {
	w.line("    option tcp-check")
	if c == nil {
		return
	}
	w.line("    tcp-check connect default") // the server's own settings: its PROXY header
	if c.Send != "" {
		w.line("    tcp-check send \"%s\\r\\n\"", quoteTCP(c.Send))
	}
	w.line("    tcp-check expect string \"%s\"", quoteTCP(c.Expect))
}

// quoteTCP makes a validated check string (printable ASCII, no '"' or
// '\') literal inside double quotes, where '$' would name a variable.
func quoteTCP(v string) string { return strings.ReplaceAll(v, "$", `\$`) }
