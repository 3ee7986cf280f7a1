package specs_test

import (
	"strings"
	"testing"
)

// TestHeadersAndHSTS: header changes and HSTS are checked like every string
// that reaches haproxy.cfg, each problem at its path.
func TestHeadersAndHSTS(t *testing.T) {
	route := func(h string) string {
		return strings.Replace(base, "    - pool: api_pool\n", "    - pool: api_pool\n      headers: "+h+"\n", 1)
	}
	hsts := func(h string) string {
		return base + "  frontend:\n    tls:\n      certificateFile: /x.pem\n      hsts: " + h + "\n"
	}
	cases := []errCase{
		{"good", route(`{request: {set: {X-Api: "2"}, del: [X-Debug]}, response: {set: {Cache-Control: "no-store, max-age=0"}}}`), ""},
		{"bad name", route(`{request: {set: {"X Api": "2"}}}`), "spec.routes[0].headers.request.set[X Api]: must be a header name"},
		{"quote", route(`{response: {set: {X-A: 'say "hi"'}}}`), `spec.routes[0].headers.response.set[X-A]: must be at most 1024 printable ASCII characters without '"' or '\'`},
		{"newline", route(`{response: {set: {X-A: "a\nb: c"}}}`), "spec.routes[0].headers.response.set[X-A]: must be at most 1024 printable ASCII"},
		{"reserved", route(`{request: {del: [X-Forwarded-For]}}`), "spec.routes[0].headers.request.del[0]: X-Forwarded-For is set by incuslb itself"},
		{"hsts", hsts("{maxAge: 8760h, includeSubDomains: true, preload: true}"), ""},
		{"hsts no age", hsts("{includeSubDomains: true}"), "spec.frontend.tls.hsts.maxAge: must be a positive whole number of seconds"},
		{"preload short", hsts("{maxAge: 24h, includeSubDomains: true, preload: true}"), "spec.frontend.tls.hsts.preload: needs includeSubDomains: true and a maxAge of at least a year"},
	}
	checkErrCases(t, cases)
}
