package specs_test

import (
	"strings"
	"testing"
)

// errCase is a spec (in) and the error it must give (want, a substring),
// or "" when it is valid.
type errCase struct{ name, in, want string }

// checkErrCases prepares each case's spec and checks its error.
func checkErrCases(t *testing.T, cases []errCase) {
	t.Helper()
	for _, c := range cases {
		_, err := prepare(c.in)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: want valid, got %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v\nwant %s", c.name, err, c.want)
		}
	}
}
