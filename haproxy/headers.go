package haproxy

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incuslb/incuslb/specs"
)

// routeConds are the ACL conditions of a route (none: it matches all).
func routeConds(r specs.Route) []string {
	var conds []string
	if r.Host != "" {
		conds = append(conds, fmt.Sprintf("{ req.hdr(host),field(1,:),lower -m str %s }", strings.ToLower(r.Host)))
	}
	if r.PathPrefix != "" {
		conds = append(conds, fmt.Sprintf("{ path_beg %s }", r.PathPrefix))
	}
	return conds
}

// renderRouteHeaders writes the routes' header changes. The first route
// that matches is noted in txn.route (as use_backend picks it), and each
// change applies only to that route's requests and answers. Nothing is
// written when no route changes headers or limits requests.
func renderRouteHeaders(w *writer, routes []specs.Route) {
	if !slices.ContainsFunc(routes, func(r specs.Route) bool { return hasHeaderOps(r.Headers) || r.RateLimit != nil }) {
		return
	}
	for i, r := range routes {
		cond := strings.Join(append(routeConds(r), "!{ var(txn.route) -m found }"), " ")
		w.line("    http-request set-var(txn.route) int(%d) if %s", i, cond)
	}
	for i, r := range routes {
		on := fmt.Sprintf("if { var(txn.route) -m int %d }", i)
		writeHeaderOps(w, "http-request", r.Headers.Request, on)
		writeHeaderOps(w, "http-response", r.Headers.Response, on)
	}
}

func hasHeaderOps(h specs.Headers) bool {
	return len(h.Request.Set)+len(h.Request.Del)+len(h.Response.Set)+len(h.Response.Del) > 0
}

// writeHeaderOps deletes, then sets, in a stable order.
func writeHeaderOps(w *writer, dir string, ops specs.HeaderOps, on string) {
	for _, name := range ops.Del {
		w.line("    %s del-header %s %s", dir, name, on)
	}
	for _, name := range slices.Sorted(maps.Keys(ops.Set)) {
		w.line("    %s set-header %s \"%s\" %s", dir, name, quoteValue(ops.Set[name]), on)
	}
}

// quoteValue makes a validated header value (printable ASCII, no '"' or
// '\') literal inside double quotes: '%' would start a log-format
// expression, '$' an environment variable.
func quoteValue(v string) string {
	return strings.NewReplacer("%", "%%", "$", `\$`).Replace(v)
}

// hstsValue is the Strict-Transport-Security header's value.
func hstsValue(h *specs.HSTSSpec) string {
	v := fmt.Sprintf("max-age=%d", int64(h.MaxAge.Duration/time.Second))
	if h.IncludeSubDomains {
		v += "; includeSubDomains"
	}
	if h.Preload {
		v += "; preload"
	}
	return v
}
