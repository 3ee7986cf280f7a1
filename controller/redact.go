package controller

import (
	"net/url"
	"regexp"
	"strings"
)

// Credentials out of what is logged and recorded: a repository URL and
// what git prints about it.

var (
	urlUserinfo = regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s'"]+@`)
	urlQueryArg = regexp.MustCompile(`([?&][^=&#\s'"]+=)[^&#\s'"]+`)
)

// RedactURL returns a repository URL (or any text holding URLs) without
// credentials: the user information of every URL becomes ***, and so does
// every query value (?access_token=***). A path or an scp-like
// user@host:path is left as it is.
func RedactURL(s string) string {
	s = urlUserinfo.ReplaceAllString(s, "${1}***@")
	return urlQueryArg.ReplaceAllString(s, "${1}***")
}

// redact removes the credentials of g.URL from text git wrote, as given
// and as git may print them (decoded), then any other URL credentials.
func (g *GitSource) redact(s string) string {
	if g.URL != "" {
		s = strings.ReplaceAll(s, g.URL, g.Redacted())
	}
	for _, secret := range urlSecrets(g.URL) {
		s = strings.ReplaceAll(s, secret, "***")
	}
	return RedactURL(s)
}

// urlSecrets are the credentials in a URL, raw and decoded: the password
// (or the user name when there is no password: a token), and the query
// values. Short ones (under 6 bytes) are left to the URL patterns, so as
// not to blank out common words.
func urlSecrets(raw string) []string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return nil
	}
	var out []string
	add := func(vals ...string) {
		for _, v := range vals {
			if len(v) >= 6 {
				out = append(out, v, url.QueryEscape(v), url.PathEscape(v))
			}
		}
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
		} else {
			add(u.User.Username())
		}
	}
	for _, vs := range u.Query() {
		add(vs...)
	}
	return out
}
