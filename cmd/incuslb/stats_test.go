package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// --listen is loopback or a unix socket, and the refusal names the flag.
func TestStatsListen(t *testing.T) {
	for _, tc := range []struct {
		in, network, addr, err string
	}{
		{"127.0.0.1:9100", "tcp", "127.0.0.1:9100", ""},
		{"127.0.0.2:0", "tcp", "127.0.0.2:0", ""},
		{"[::1]:9100", "tcp", "[::1]:9100", ""},
		{"localhost:9100", "tcp", "127.0.0.1:9100", ""},
		{"/run/user/1000/lb-stats.sock", "unix", "/run/user/1000/lb-stats.sock", ""},
		{"./stats.sock", "unix", "./stats.sock", ""},
		{"0.0.0.0:9100", "", "", `--listen "0.0.0.0:9100": 0.0.0.0 is not a loopback address`},
		{"[::]:9100", "", "", `--listen "[::]:9100": :: is not a loopback address`},
		{":9100", "", "", `--listen ":9100": an empty host means every address`},
		{"10.0.0.5:9100", "", "", "is not a loopback address; the stats page is served on loopback only"},
		{"example.org:9100", "", "", "example.org is not a loopback address"},
		{"9100", "", "", `--listen "9100": give HOST:PORT`},
	} {
		network, addr, err := statsListen(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || network != tc.network || addr != tc.addr {
			t.Errorf("%s: %s %s %v", tc.in, network, addr, err)
		}
	}
}

// A non-loopback --listen is a usage error before anything is reached.
func TestStatsRefusesNonLoopback(t *testing.T) {
	code, _, stderr := runCLI(t, "", "stats", "web", "--listen", "0.0.0.0:9100")
	if code != exitUsage || !strings.Contains(stderr, "--listen") || !strings.Contains(stderr, "loopback") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}

// HAProxy's answers, as the stats frontend writes them: a page with a
// length, the chunked Prometheus exporter, and what is refused.
func TestParseStatsAnswer(t *testing.T) {
	chunked := "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n" +
		"1a\r\nhaproxy_process_nbthread 1\r\n0\r\n\r\n"
	for _, tc := range []struct {
		name, answer, method string
		status               int
		body, err            string
	}{
		{"page", "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 5\r\n\r\nhello", "GET", 200, "hello", ""},
		{"chunked metrics", chunked, "GET", 200, "haproxy_process_nbthread 1", ""},
		{"head", "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n\r\n", "HEAD", 200, "", ""},
		{"not found", "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nno\n", "GET", 404, "no\n", ""},
		{"cut short", "HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhello", "GET", 0, "", "unexpected EOF"},
		{"not HTTP", "Unknown command\n", "GET", 0, "", "malformed HTTP"},
		{"too large", "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("x", maxStatsAnswer), "GET", 0, "", fmt.Sprintf("larger than %d bytes", maxStatsAnswer)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body, err := parseStatsAnswer(tc.answer, tc.method)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || resp.StatusCode != tc.status || string(body) != tc.body {
				t.Fatalf("%v %q %v", resp, body, err)
			}
		})
	}
}

// fakeSocket answers every exchange with answer, and keeps the request.
type fakeSocket struct {
	answer string
	got    []string
}

func (f *fakeSocket) Exchange(_ context.Context, payload string) (string, error) {
	f.got = append(f.got, payload)
	return f.answer, nil
}

// The proxy sends one request per connection with Connection: close,
// relays status, headers and body, and forwards only GET and HEAD.
func TestStatsProxy(t *testing.T) {
	sock := &fakeSocket{answer: "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nrefresh: 10\r\nconnection: close\r\ncontent-length: 4\r\n\r\npage"}
	p := &statsProxy{sock: sock, host: "127.0.0.1:9100"}
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/stats?x=1", nil))
	if rec.Code != 200 || rec.Body.String() != "page" || rec.Header().Get("Refresh") != "10" || rec.Header().Get("Connection") != "" {
		t.Fatalf("%d %q %v", rec.Code, rec.Body, rec.Header())
	}
	want := "GET /stats?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nUser-Agent: incuslb-stats\r\nConnection: close\r\n\r\n"
	if len(sock.got) != 1 || sock.got[0] != want {
		t.Fatalf("sent %q", sock.got)
	}
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("POST", "/stats", strings.NewReader("x")))
	if rec.Code != http.StatusMethodNotAllowed || len(sock.got) != 1 {
		t.Fatalf("POST: %d, %d sent", rec.Code, len(sock.got))
	}
	sock.answer = "garbage"
	rec = httptest.NewRecorder()
	p.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("garbage: %d", rec.Code)
	}
}
