package specs

import (
	"fmt"
	"regexp"
)

// TCPListener is a TCP service: connections to Port go to Pool (a pool
// with mode: tcp), unchanged (Forgejo's SSH, a database).
type TCPListener struct {
	// Name names the listener (HAProxy's frontend tcp_NAME).
	Name string `json:"name"`
	// Port it listens on, on every address of the LB.
	Port int `json:"port"`
	// Pool is a pool with mode: tcp.
	Pool string `json:"pool"`
}

// TCPCheck is a send/expect health check of a tcp pool: each of Send's
// lines is sent, then the answer must hold Expect. Without it, a check is a
// TCP connect.
type TCPCheck struct {
	// Send is sent first (a line such as "PING"); empty sends nothing.
	Send string `json:"send,omitempty"`
	// Expect is a string the server's answer must contain ("SSH-2.0").
	Expect string `json:"expect"`
}

// Pool modes and PROXY protocol versions.
const (
	ModeHTTP = "http"
	ModeTCP  = "tcp"
	maxTCP   = 32
)

var (
	proxyProtocols = []string{"", "v1", "v2"}
	// tcpCheckRE is printable ASCII without '"' and '\' (written quoted).
	tcpCheckRE = regexp.MustCompile(`^[ !#-\[\]-~]{1,256}$`)
)

func validateTCP(e *errs, s *LoadBalancerSpec, pools map[string]int) {
	if len(s.TCP) > maxTCP {
		e.add("spec.tcp", "at most %d listeners, not %d", maxTCP, len(s.TCP))
		return
	}
	names := map[string]int{}
	for i, l := range s.TCP {
		path := fmt.Sprintf("spec.tcp[%d]", i)
		if !nameRE.MatchString(l.Name) {
			e.add(path+".name", "must start with a letter and hold only letters, digits, '_', '.' and '-' (at most 63), not %q", l.Name)
		} else if j, dup := names[l.Name]; dup {
			e.add(path+".name", "repeats spec.tcp[%d]", j)
		}
		names[l.Name] = i
		j, ok := pools[l.Pool]
		switch {
		case !ok:
			e.add(path+".pool", "names no pool in spec.pools: %q", l.Pool)
		case s.Pools[j].Mode != ModeTCP:
			e.add(path+".pool", "pool %q has mode %s; a TCP listener needs a pool with mode: tcp", l.Pool, s.Pools[j].Mode)
		}
	}
}

// validateTCPPool checks what a pool's mode allows.
func validateTCPPool(e *errs, path string, p *Pool) {
	if p.Mode != ModeHTTP && p.Mode != ModeTCP {
		e.add(path+".mode", "must be %s or %s, not %q", ModeHTTP, ModeTCP, p.Mode)
		return
	}
	if p.ProxyProtocol != "" && p.ProxyProtocol != "v1" && p.ProxyProtocol != "v2" {
		e.add(path+".proxyProtocol", "must be v1 or v2, not %q", p.ProxyProtocol)
	}
	if p.Mode == ModeHTTP {
		if p.TCPCheck != nil {
			e.add(path+".tcpCheck", "is for pools with mode: tcp (an http pool is checked with healthCheck.path)")
		}
		return
	}
	if p.Sticky != nil {
		e.add(path+".sticky", "needs mode: http (a cookie is an HTTP header)")
	}
	if p.Balance == BalanceURI {
		e.add(path+".balance", "uri needs mode: http")
	}
	if p.BackendTLS != nil {
		e.add(path+".backendTLS", "is for mode: http pools (a tcp pool passes TLS through unchanged)")
	}
	if p.RateLimit != nil {
		e.add(path+".rateLimit", "needs mode: http (it counts requests)")
	}
	c := p.HealthCheck
	for _, f := range []struct{ name, value string }{{"path", c.Path}, {"host", c.Host}, {"expectStatus", c.ExpectStatus}} {
		if f.value != "" {
			e.add(path+".healthCheck."+f.name, "is for mode: http pools (a tcp pool is checked by a connect, or by tcpCheck)")
		}
	}
	if c := p.TCPCheck; c != nil {
		if c.Send != "" && !tcpCheckRE.MatchString(c.Send) {
			e.add(path+".tcpCheck.send", "must be 1 to 256 printable ASCII characters without '\"' or '\\'")
		}
		if !tcpCheckRE.MatchString(c.Expect) {
			e.add(path+".tcpCheck.expect", "must be 1 to 256 printable ASCII characters without '\"' or '\\'")
		}
	}
}
