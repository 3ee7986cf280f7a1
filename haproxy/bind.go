package haproxy

import "github.com/incuslb/incuslb/specs"

// bind writes a listener's bind lines: ":PORT" (every IPv4 address) and,
// with spec.frontend.ipv6, "[::]:PORT v6only" (every IPv6 address) beside
// it. v6only keeps the two sockets apart whatever the kernel's
// net.ipv6.bindv6only says, so neither fails with "address in use".
// opts follow the address ("ssl crt-list ...").
func bind(w *writer, s *specs.LoadBalancerSpec, port int, opts string) {
	if opts != "" {
		opts = " " + opts
	}
	w.line("    bind :%d%s", port, opts)
	if s.Frontend.IPv6 {
		w.line("    bind [::]:%d v6only%s", port, opts)
	}
}
