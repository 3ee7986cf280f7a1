package specs

import (
	"fmt"
	"maps"
	"net"
	"slices"
)

// Checks of single values that several parts of a spec share: host
// names, server addresses and selectors.

// validHost reports whether h is a DNS name or an IPv4 address. The bytes
// are checked first: only ASCII letters, digits, '-' and '.' pass, so no
// Unicode letter that case-folds to an ASCII one (U+212A KELVIN SIGN to
// 'k') gets through a case-insensitive comparison later.
func validHost(h string) bool {
	if len(h) == 0 || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return hostnameRE.MatchString(h)
}

// checkAddress returns why a static server address is unusable, or "".
func checkAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("must be host:port, not %q%s", addr, bracketHint(addr))
	}
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		if reason := checkIPv6Server(addr, ip); reason != "" {
			return reason
		}
	} else if !validHost(host) {
		return fmt.Sprintf("host must be an IPv4 address, [an IPv6 address] or a DNS name, not %q", host)
	}
	var n int
	if _, err := fmt.Sscanf(port, "%d", &n); err != nil || fmt.Sprint(n) != port || n < 1 || n > 65535 {
		return fmt.Sprintf("port must be between 1 and 65535, not %q", port)
	}
	return ""
}

// validateSelector checks a selector's keys and values (its size and
// presence are the caller's).
func validateSelector(e *errs, path string, sel map[string]string) {
	for _, k := range slices.Sorted(maps.Keys(sel)) {
		kp := fmt.Sprintf("%s[%s]", path, k)
		if !configKeyRE.MatchString(k) {
			e.add(kp, "must be an Incus config key such as user.role")
		}
		if v := sel[k]; !labelValRE.MatchString(v) {
			e.add(kp, "value must be letters, digits, '.', '_' and '-' (at most 63, alphanumeric at both ends), not %q", v)
		}
	}
}
