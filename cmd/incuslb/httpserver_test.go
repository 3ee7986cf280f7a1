package main

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/controller"
)

const hookSecret = "s3cret"

func hookSignature(body string) string {
	m := hmac.New(sha256.New, []byte(hookSecret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

// hookServer serves the webhook with newHTTPServer and limits; triggers
// counts the fetches it asked for.
func hookServer(t *testing.T, limits httpLimits) (srv *httptest.Server, triggers *atomic.Int32) {
	t.Helper()
	triggers = new(atomic.Int32)
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/git", &controller.Webhook{Secret: []byte(hookSecret), Branch: "main", Log: logr.Discard(),
		Trigger: func(string) { triggers.Add(1) }})
	srv = httptest.NewUnstartedServer(nil)
	srv.Config = newHTTPServer(mux, limits)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, triggers
}

func shortLimits() httpLimits {
	l := defaultHTTPLimits()
	l.ReadHeaderTimeout, l.ReadTimeout, l.WriteTimeout = 500*time.Millisecond, time.Second, 5*time.Second
	return l
}

func TestHTTPServerDefaults(t *testing.T) {
	s := newHTTPServer(http.NotFoundHandler(), defaultHTTPLimits())
	if s.ReadHeaderTimeout != 5*time.Second || s.ReadTimeout != 10*time.Second || s.WriteTimeout != 10*time.Second ||
		s.IdleTimeout != time.Minute || s.MaxHeaderBytes != 16<<10 {
		t.Fatalf("limits %v %v %v %v %d", s.ReadHeaderTimeout, s.ReadTimeout, s.WriteTimeout, s.IdleTimeout, s.MaxHeaderBytes)
	}
}

func TestHTTPServerAcceptsASignedPush(t *testing.T) {
	srv, triggers := hookServer(t, shortLimits())
	body := `{"ref":"refs/heads/main"}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/git", strings.NewReader(body))
	req.Header.Set("X-Forgejo-Event", "push")
	req.Header.Set("X-Forgejo-Signature", hookSignature(body))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || triggers.Load() != 1 {
		t.Fatalf("a signed push: %d, %d fetches; want 202 and one", resp.StatusCode, triggers.Load())
	}
}

func TestHTTPServerCutsATrickledBody(t *testing.T) {
	limits := shortLimits()
	srv, triggers := hookServer(t, limits)
	body := `{"ref":"refs/heads/main"}` // one byte every 100ms: 2.5s
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST /hooks/git HTTP/1.1\r\nHost: x\r\nX-Forgejo-Event: push\r\nX-Forgejo-Signature: %s\r\nContent-Length: %d\r\n\r\n",
		hookSignature(body), len(body))
	go func() {
		for i := range len(body) {
			if _, err := conn.Write([]byte{body[i]}); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	elapsed := time.Since(start)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusAccepted {
			t.Fatalf("a body trickled over 2.5s was accepted after %s (ReadTimeout %s)", elapsed, limits.ReadTimeout)
		}
	}
	if elapsed > limits.ReadTimeout+time.Second {
		t.Fatalf("the connection lasted %s, ReadTimeout is %s", elapsed, limits.ReadTimeout)
	}
	if triggers.Load() != 0 {
		t.Fatal("the trickled push triggered a fetch")
	}
}

func TestHTTPServerRefusesHugeHeaders(t *testing.T) {
	srv, triggers := hookServer(t, shortLimits())
	body := `{"ref":"refs/heads/main"}`
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/hooks/git", strings.NewReader(body))
	req.Header.Set("X-Forgejo-Event", "push")
	req.Header.Set("X-Forgejo-Signature", hookSignature(body))
	req.Header.Set("X-Padding", strings.Repeat("a", 64<<10))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || triggers.Load() != 0 {
		t.Fatalf("64 KiB of headers: %d, %d fetches; want 431 and none", resp.StatusCode, triggers.Load())
	}
}
