package specs_test

import (
	"strings"
	"testing"
)

// TestRateLimit: each bad value of a rate limit is refused at its path.
func TestRateLimit(t *testing.T) {
	route := func(rl string) string {
		return strings.Replace(base, "    - pool: api_pool\n", "    - pool: api_pool\n      rateLimit: "+rl+"\n", 1)
	}
	cases := []errCase{
		{"example", route("{requests: 20, per: 10s, by: source, burst: 5}"), ""},
		{"header", route("{requests: 100, per: 1m, by: 'header:Authorization', allow: [10.0.0.0/8, '::1']}"), ""},
		{"no requests", route("{per: 10s}"), "spec.routes[0].rateLimit.requests: must be between 1 and 1000000, not 0"},
		{"short window", route("{requests: 5, per: 500ms}"), `spec.routes[0].rateLimit.per: must be whole seconds from 1s to 24h, not "500ms"`},
		{"by", route("{requests: 5, per: 1s, by: 'query:x'}"), `spec.routes[0].rateLimit.by: must be source, header:NAME or cookie:NAME, not "query:x"`},
		{"allow", route("{requests: 5, per: 1s, allow: [somewhere]}"), `spec.routes[0].rateLimit.allow[0]: must be an address or a CIDR prefix, not "somewhere"`},
		{"burst", route("{requests: 5, per: 1s, burst: -1}"), "spec.routes[0].rateLimit.burst: must be between 0 and 1000000, not -1"},
		{"pool", strings.Replace(base, "      port: 8080\n", "      port: 8080\n      rateLimit: {requests: 0, per: 1s}\n", 1), "spec.pools[0].rateLimit.requests"},
		{"peers port", base + "  stats: {port: 10000}\n", "spec.stats.port: port 10000 is reserved"},
	}
	checkErrCases(t, cases)
}
