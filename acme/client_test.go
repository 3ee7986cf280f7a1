package acme

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme/api"
)

// fakeResponder records calls and the contexts' deadlines.
type fakeResponder struct {
	mu        sync.Mutex
	presented map[string]string
	deadlines []time.Duration
	ctxErrs   []error
}

func (f *fakeResponder) Present(ctx context.Context, token, keyAuth string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note(ctx)
	if f.presented == nil {
		f.presented = map[string]string{}
	}
	f.presented[token] = keyAuth
	return nil
}

func (f *fakeResponder) CleanUp(ctx context.Context, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.note(ctx)
	delete(f.presented, token)
	return nil
}

func (f *fakeResponder) note(ctx context.Context) {
	d, _ := ctx.Deadline()
	f.deadlines = append(f.deadlines, time.Until(d))
	f.ctxErrs = append(f.ctxErrs, ctx.Err())
}

// TestHTTPProviderBridge checks the adapter to lego's provider: a deadline
// on each call, and CleanUp still running after the order's context ended.
func TestHTTPProviderBridge(t *testing.T) {
	f := &fakeResponder{}
	p := &httpProvider{r: f, timeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	if err := p.Present(ctx, "a.example", "tok", "tok.thumb"); err != nil {
		t.Fatal(err)
	}
	if f.presented["tok"] != "tok.thumb" {
		t.Fatalf("presented %v", f.presented)
	}
	cancel()
	if err := p.CleanUp(ctx, "a.example", "tok", "tok.thumb"); err != nil {
		t.Fatal(err)
	}
	if len(f.presented) != 0 {
		t.Fatalf("token left after CleanUp: %v", f.presented)
	}
	for i, d := range f.deadlines {
		if d <= 0 || d > 5*time.Second {
			t.Errorf("call %d: deadline in %v, want within 5s", i, d)
		}
		if f.ctxErrs[i] != nil {
			t.Errorf("call %d: context already done: %v", i, f.ctxErrs[i])
		}
	}
}

// TestObtainArguments checks what Obtain refuses before any request (the
// directory in testConfig is unreachable, so reaching it would fail
// differently).
func TestObtainArguments(t *testing.T) {
	c := newTestClient(t, testConfig(t))
	r := &fakeResponder{}
	dns := &httpProvider{r: r} // any challenge.Provider
	tests := []struct {
		name  string
		cname string
		hosts []string
		http  Responder
		want  string
	}{
		{"neither challenge", "web", []string{"a.example"}, nil, "exactly one"},
		{"no hosts", "web", nil, r, "no hosts"},
		{"empty host", "web", []string{""}, r, "empty"},
		{"wildcard over HTTP-01", "web", []string{"*.a.example"}, r, "DNS-01"},
		{"bad name", "../web", []string{"a.example"}, r, "certificate name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Obtain(context.Background(), tt.cname, tt.hosts, tt.http, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Obtain: %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := c.Obtain(context.Background(), "web", []string{"a.example"}, r, dns); err == nil ||
		!strings.Contains(err.Error(), "exactly one") {
		t.Fatalf("Obtain with both: %v", err)
	}
}

// fakeCA serves an ACME directory, with an ARI endpoint when ari is set,
// over TLS on loopback.
func fakeCA(t *testing.T, ari bool, window string) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/dir", func(w http.ResponseWriter, _ *http.Request) {
		dir := map[string]string{
			"newNonce":   srv.URL + "/nonce",
			"newAccount": srv.URL + "/account",
			"newOrder":   srv.URL + "/order",
		}
		if ari {
			dir["renewalInfo"] = srv.URL + "/ari"
		}
		_ = json.NewEncoder(w).Encode(dir)
	})
	mux.HandleFunc("/ari/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "21600")
		_, _ = w.Write([]byte(window))
	})
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestRenewalInfo asks a fake CA for a window, with and without ARI.
func TestRenewalInfo(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	chain := newTestChain(t, []string{"a.example"}, now, now.Add(90*24*time.Hour))
	crt, leaf, err := parseCertificate("web", nil, chain.pem())
	if err != nil {
		t.Fatal(err)
	}
	certID, err := api.MakeARICertID(leaf)
	if err != nil {
		t.Fatal(err)
	}
	start, end := now.Add(50*24*time.Hour).UTC(), now.Add(52*24*time.Hour).UTC()
	window := `{"suggestedWindow":{"start":"` + start.Format(time.RFC3339) + `","end":"` + end.Format(time.RFC3339) +
		`"},"explanationURL":"https://ca.example/why"}`

	tests := []struct {
		name   string
		ari    bool
		window string
		want   *RenewalWindow
	}{
		{"no ARI offered", false, "", nil},
		{"ARI window", true, window, &RenewalWindow{Start: start, End: end, RetryAfter: 6 * time.Hour, ExplanationURL: "https://ca.example/why"}},
		{"empty ARI window", true, `{"suggestedWindow":{"start":"` + start.Format(time.RFC3339) + `","end":"` + start.Format(time.RFC3339) + `"}}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakeCA(t, tt.ari, tt.window)
			var seen string
			srv.Config.Handler = logPaths(srv.Config.Handler, &seen)
			cfg := testConfig(t)
			cfg.Directory = srv.URL + "/dir"
			cfg.CABundle = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
			got, err := newTestClient(t, cfg).RenewalInfo(context.Background(), crt)
			if err != nil {
				t.Fatalf("RenewalInfo: %v", err)
			}
			switch {
			case tt.want == nil && got != nil:
				t.Fatalf("RenewalInfo = %+v, want nil", got)
			case tt.want == nil:
			case got == nil:
				t.Fatalf("RenewalInfo = nil, want %+v", tt.want)
			case !got.Start.Equal(tt.want.Start) || !got.End.Equal(tt.want.End) ||
				got.RetryAfter != tt.want.RetryAfter || got.ExplanationURL != tt.want.ExplanationURL:
				t.Fatalf("RenewalInfo = %+v, want %+v", got, tt.want)
			}
			if tt.ari && !strings.HasSuffix(seen, "/ari/"+certID) {
				t.Fatalf("asked %q, want the ARI certificate ID %s", seen, certID)
			}
		})
	}
}

// logPaths records the last request path handled by h.
func logPaths(h http.Handler, last *string) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		*last = r.URL.Path
		mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// TestRenewalInfoUntrustedCA checks that without the CA bundle the fake
// CA's TLS is refused, so CABundle is what made TestRenewalInfo work.
func TestRenewalInfoUntrustedCA(t *testing.T) {
	srv := fakeCA(t, true, "{}")
	cfg := testConfig(t)
	cfg.Directory = srv.URL + "/dir"
	cfg.HTTPTimeout = 2 * time.Second
	now := time.Now()
	crt, _, err := parseCertificate("web", nil, newTestChain(t, []string{"a.example"}, now, now.Add(time.Hour)).pem())
	if err != nil {
		t.Fatal(err)
	}
	_, err = newTestClient(t, cfg).RenewalInfo(context.Background(), crt)
	if err == nil {
		t.Fatal("RenewalInfo trusted an unknown CA")
	}
	if r := Reason(err); r != ReasonConnection {
		t.Errorf("Reason(%v) = %q, want %q", err, r, ReasonConnection)
	}
	if errors.Is(err, api.ErrNoARI) {
		t.Fatal("an unreachable CA read as no ARI")
	}
}
