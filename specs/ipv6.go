package specs

import (
	"fmt"
	"net"
	"strings"
)

// Address families a selector pool reaches its members on
// (Pool.Family).
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
	FamilyAny  = "any" // the IPv4 address when there is one, else the IPv6 one
)

var families = []string{FamilyIPv4, FamilyIPv6, FamilyAny}

func validateFamily(e *errs, path, f string) {
	switch f {
	case FamilyIPv4, FamilyIPv6, FamilyAny:
	default:
		e.add(path, "must be one of ipv4, ipv6 or any, not %q", f)
	}
}

// checkIPv6Server returns why a static server's IPv6 address (ip, from
// addr "[ip]:port") is unusable, or "".
func checkIPv6Server(addr string, ip net.IP) string {
	switch {
	case ip.IsUnspecified():
		return fmt.Sprintf("must be a server's address, not the unspecified address: %q", addr)
	case ip.IsMulticast():
		return fmt.Sprintf("must be a unicast address, not %q", addr)
	case ip.IsLinkLocalUnicast():
		return fmt.Sprintf("must not be link-local (it would need a zone): %q", addr)
	}
	return ""
}

// bracketHint is the hint for an address that fails to split into
// host:port because it is an IPv6 address out of brackets.
func bracketHint(addr string) string {
	if strings.Count(addr, ":") > 1 && !strings.HasPrefix(addr, "[") {
		return " (an IPv6 address goes in brackets: [2001:db8::1]:8080)"
	}
	return ""
}
