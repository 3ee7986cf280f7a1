package controller

import (
	"path/filepath"
	"strings"
)

// What GitSource refuses before it runs git: a branch, a spec path or an
// object name that git could read as something else.

// badBranch says why b is not a branch name git check-ref-format would
// take and that is safe in a refspec, or "".
func badBranch(b string) string {
	switch {
	case b == "":
		return "is empty"
	case strings.HasPrefix(b, "-"):
		return `begins with "-" (git would read it as an option)`
	case hasControl(b) || strings.ContainsAny(b, " ~^:?*[\\"):
		return "holds a space, a control character or one of ~^:?*[\\"
	case strings.Contains(b, "..") || strings.Contains(b, "@{") || strings.Contains(b, "//") || b == "@":
		return `holds "..", "@{" or "//", or is "@"`
	case strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".") || strings.HasPrefix(b, "/"):
		return `begins with "/" or ends with "/" or "."`
	}
	for _, c := range strings.Split(b, "/") {
		if strings.HasPrefix(c, ".") || strings.HasSuffix(c, ".lock") {
			return `has a component that begins with "." or ends with ".lock"`
		}
	}
	return ""
}

// badSpecPath says why p is not a relative directory inside the
// repository, or "".
func badSpecPath(p string) string {
	switch {
	case p == "":
		return "is empty"
	case strings.HasPrefix(p, "-"):
		return `begins with "-" (git would read it as an option)`
	case hasControl(p):
		return "holds control characters"
	case !filepath.IsLocal(filepath.FromSlash(p)):
		return "is not a relative path inside the repository"
	}
	return ""
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func isObjectName(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	return !strings.ContainsFunc(s, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') })
}
