package haproxy

import (
	"os"
	"strings"
	"testing"
)

// LineWriter passes on whole lines whatever the writes cut, drops empty
// ones and cuts a line that is too long.
func TestLineWriter(t *testing.T) {
	long := strings.Repeat("x", maxLogLine+10)
	for _, tc := range []struct {
		name   string
		writes []string
		flush  bool
		want   []string
	}{
		{"whole lines", []string{"a\nb\n"}, false, []string{"a", "b"}},
		{"cut across writes", []string{"2026-11-25T01:39 GET", " /a HTTP/1.1\n", "b"}, false, []string{"2026-11-25T01:39 GET /a HTTP/1.1"}},
		{"the rest on flush", []string{"a\nb"}, true, []string{"a", "b"}},
		{"empty lines and CRs", []string{"\n\r\n  \na\r\n\n"}, true, []string{"a"}},
		{"a long line is cut", []string{long[:100], long[100:] + "\nnext\n"}, false, []string{long[:maxLogLine], "next"}},
		{"a long line in one write", []string{long + "\nnext"}, true, []string{long[:maxLogLine], "next"}},
		{"exactly the maximum", []string{long[:maxLogLine] + "\n"}, false, []string{long[:maxLogLine]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			lw := &LineWriter{Line: func(l string) { got = append(got, l) }}
			for _, w := range tc.writes {
				if n, err := lw.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if tc.flush {
				lw.Flush()
			}
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("got %d lines %.80q, want %d %.80q", len(got), got, len(tc.want), tc.want)
			}
		})
	}
}

// StatsAddr reads the stats frontend's address back from a rendered config.
func TestStatsAddr(t *testing.T) {
	cfg := "global\n    log /dev/log local0\n\nfrontend stats\n    bind 127.0.0.1:9200\n    stats enable\n\nfrontend main\n    bind :80\n"
	if got := StatsAddr([]byte(cfg)); got != "127.0.0.1:9200" {
		t.Errorf("StatsAddr = %q", got)
	}
	golden, err := os.ReadFile("testdata/minimal.cfg.golden")
	if err != nil {
		t.Fatal(err)
	}
	if got := StatsAddr(golden); got != "127.0.0.1:9100" {
		t.Errorf("StatsAddr of a rendered config = %q", got)
	}
	if got := StatsAddr([]byte("frontend main\n    bind :80\n")); got != "" {
		t.Errorf("StatsAddr without stats = %q", got)
	}
}
