package specs_test

import (
	"strings"
	"testing"
)

// TestCanary: a pool's canary, each bad value at its path.
func TestCanary(t *testing.T) {
	canary := func(c string) string {
		return strings.Replace(base, "      port: 8080\n", "      port: 8080\n      canary: "+c+"\n", 1)
	}
	static := base + "    - {name: st, servers: [{name: s, address: '10.0.0.5:80'}], canary: {selector: {user.role: c}, percent: 5}}\n"
	cases := []errCase{
		{"good", canary("{selector: {user.role: api-canary}, percent: 10}"), ""},
		{"zero", canary("{selector: {user.role: api-canary}, percent: 0}"), ""},
		{"all", canary("{selector: {user.role: api, user.track: canary}, percent: 100}"), ""},
		{"percent high", canary("{selector: {user.role: api-canary}, percent: 101}"), "spec.pools[0].canary.percent: must be between 0 and 100, not 101"},
		{"percent low", canary("{selector: {user.role: api-canary}, percent: -1}"), "spec.pools[0].canary.percent: must be between 0 and 100, not -1"},
		{"no selector", canary("{percent: 10}"), "spec.pools[0].canary.selector: is required"},
		{"same selector", canary("{selector: {user.role: api}, percent: 10}"), "spec.pools[0].canary.selector: must differ from the pool's selector"},
		{"bad key", canary("{selector: {'bad key': x}, percent: 10}"), "spec.pools[0].canary.selector[bad key]: must be an Incus config key"},
		{"bad value", canary("{selector: {user.role: 'x;y'}, percent: 10}"), `spec.pools[0].canary.selector[user.role]: value must be letters`},
		{"static pool", static, "spec.pools[1].canary: needs a selector pool"},
	}
	checkErrCases(t, cases)
}
