package specs

import (
	"fmt"
	"regexp"
	"slices"
	"time"
)

// HSTSSpec sends Strict-Transport-Security on every https answer.
type HSTSSpec struct {
	// MaxAge is how long browsers keep to https, a duration such as "8760h"
	// (sent in seconds). Required; preload lists want at least a year.
	MaxAge Duration `json:"maxAge"`
	// IncludeSubDomains extends it to every subdomain.
	IncludeSubDomains bool `json:"includeSubDomains,omitempty"`
	// Preload asks to be in the browsers' preload lists: it needs
	// includeSubDomains and a maxAge of at least a year.
	Preload bool `json:"preload,omitempty"`
}

// Headers are header changes for the requests of a route (before they go
// to the pool) and for their answers (before they go to the client).
type Headers struct {
	Request  HeaderOps `json:"request,omitzero"`
	Response HeaderOps `json:"response,omitzero"`
}

// HeaderOps deletes headers, then sets others (replacing any value).
type HeaderOps struct {
	Set map[string]string `json:"set,omitempty"`
	Del []string          `json:"del,omitempty"`
}

// Bounds of header changes.
const (
	maxHeaderOps    = 32
	maxHeaderValue  = 1024
	hstsPreloadYear = 365 * 24 * time.Hour
)

var (
	// headerNameRE is RFC 9110's token.
	headerNameRE = regexp.MustCompile("^" + headerToken + "$")
	// headerValueRE is printable ASCII without '"' and '\' (the value is
	// written in double quotes; '%' is escaped when rendered).
	headerValueRE = regexp.MustCompile(`^[ !#-\[\]-~]*$`)
	// reservedHeaders are set by incuslb itself.
	reservedHeaders = []string{"x-forwarded-proto", "x-forwarded-for", "strict-transport-security"}
)

func validateHSTS(e *errs, h *HSTSSpec) {
	const p = "spec.frontend.tls.hsts"
	if h.MaxAge.Duration <= 0 || h.MaxAge.Duration%time.Second != 0 {
		e.add(p+".maxAge", "must be a positive whole number of seconds such as \"8760h\", not %q", h.MaxAge.String())
	}
	if h.Preload && (!h.IncludeSubDomains || h.MaxAge.Duration < hstsPreloadYear) {
		e.add(p+".preload", "needs includeSubDomains: true and a maxAge of at least a year (8760h), as the preload lists require")
	}
}

func validateHeaders(e *errs, path string, h Headers) {
	for _, side := range []struct {
		name string
		ops  HeaderOps
	}{{"request", h.Request}, {"response", h.Response}} {
		p := path + ".headers." + side.name
		if len(side.ops.Set)+len(side.ops.Del) > maxHeaderOps {
			e.add(p, "at most %d header changes, not %d", maxHeaderOps, len(side.ops.Set)+len(side.ops.Del))
			continue
		}
		for _, name := range sortedKeys(side.ops.Set) {
			checkHeaderName(e, p+".set["+name+"]", name)
			if v := side.ops.Set[name]; len(v) > maxHeaderValue || !headerValueRE.MatchString(v) {
				e.add(p+".set["+name+"]", "must be at most %d printable ASCII characters without '\"' or '\\'", maxHeaderValue)
			}
		}
		for i, name := range side.ops.Del {
			checkHeaderName(e, fmt.Sprintf("%s.del[%d]", p, i), name)
		}
	}
}

func checkHeaderName(e *errs, path, name string) {
	switch {
	case !headerNameRE.MatchString(name):
		e.add(path, "must be a header name (letters, digits and !#$%%&'*+.^_`|~-, at most 64), not %q", name)
	case slices.Contains(reservedHeaders, asciiLower(name)):
		e.add(path, "%s is set by incuslb itself", name)
	}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
}

// headerToken is RFC 9110's token, up to 64 characters: a header name.
const headerToken = "[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}"
