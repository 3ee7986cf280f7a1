package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
)

// stats serves an LB's stats page (HAProxy's `frontend stats`, which binds
// to the instance's loopback) on this host's loopback, the seed's `ssh -L`
// made easy: each request goes into the instance through a perl client
// run by Incus exec (haproxy.ExecSocket), so it works wherever the
// instance runs, on this member or another, and needs nothing in the image.
func (e *env) stats(args []string) error {
	fs := e.newFlags("stats", "stats NAME [--listen 127.0.0.1:9100|PATH] [--instance NAME] [--remote NAME]")
	listen := fs.String("listen", "127.0.0.1:9100", "where to serve the stats page: HOST:PORT on loopback (127.0.0.1, ::1, localhost), or a unix socket's path; never beyond loopback")
	f := addInstanceFlags(fs, false)
	var name string
	if err := parse(fs, args, &name); err != nil {
		return err
	}
	if name == "" {
		return usageErrorf("stats: give the LoadBalancer's name")
	}
	network, addr, err := statsListen(*listen)
	if err != nil {
		return usageErrorf("%v", err)
	}
	t, err := e.findLB(f, name)
	if err != nil {
		return err
	}
	cfg, err := t.incus.ReadFile(e.ctx, t.inst.Project, t.inst.Name, haproxy.ConfigPath)
	if err != nil {
		return fmt.Errorf("reading the config of %s: %w", t, err)
	}
	target := haproxy.StatsAddr(cfg)
	if target == "" {
		return fmt.Errorf("the config in %s has no stats frontend (not one incuslb wrote?)", t)
	}
	if network == "unix" {
		if _, err := os.Lstat(addr); err == nil {
			return fmt.Errorf("--listen %s: the path exists (another incuslb stats? remove it if not)", addr)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(e.ctx, network, addr)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", *listen, err)
	}
	defer ln.Close()
	where := fmt.Sprintf("http://%s/stats, metrics at http://%[1]s/metrics", ln.Addr())
	if network == "unix" {
		if err := os.Chmod(addr, 0o600); err != nil {
			return err
		}
		where = fmt.Sprintf("unix socket %s (curl --unix-socket %[1]s http://localhost/stats, or /metrics)", addr)
	}
	fmt.Fprintf(e.stdout, "stats of LoadBalancer %s (instance %s, %s in it): %s; Ctrl-C stops\n", name, t, target, where)
	srv := &http.Server{
		Handler:           &statsProxy{sock: t.applier.ExecIn(t.lb, target), host: target},
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      statsTimeout + 10*time.Second,
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-e.ctx.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

// statsListen checks --listen: a unix socket's path (it holds a slash), or
// HOST:PORT with a loopback HOST. It returns what net.Listen takes.
func statsListen(s string) (network, addr string, err error) {
	if strings.Contains(s, "/") {
		return "unix", s, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("--listen %q: give HOST:PORT on loopback (127.0.0.1:9100) or a unix socket's path: %v", s, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		what := host + " is not a loopback address"
		if host == "" {
			what = "an empty host means every address"
		}
		return "", "", fmt.Errorf("--listen %q: %s; the stats page is served on loopback only (127.0.0.1, ::1, localhost) or on a unix socket", s, what)
	}
	return "tcp", net.JoinHostPort(ip.String(), port), nil
}

// statsTimeout bounds one request into the instance; maxStatsAnswer what
// is read of its answer (the Prometheus metrics of a large LB are a few
// MB).
const (
	statsTimeout   = 15 * time.Second
	maxStatsAnswer = 4 << 20
)

// statsProxy forwards GET and HEAD requests to the stats frontend, one
// connection each (Connection: close), and relays the answer.
type statsProxy struct {
	sock haproxy.Socket // to the stats frontend in the instance
	host string         // its address there, for the Host header
}

func (p *statsProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "incuslb stats: only GET and HEAD are forwarded", http.StatusMethodNotAllowed)
		return
	}
	uri := r.URL.RequestURI()
	if strings.ContainsAny(uri, " \r\n") {
		http.Error(w, "incuslb stats: bad request URI", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), statsTimeout)
	defer cancel()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: incuslb-stats\r\nConnection: close\r\n\r\n", r.Method, uri, p.host)
	answer, err := p.sock.Exchange(ctx, req)
	if err != nil {
		http.Error(w, "incuslb stats: "+err.Error(), http.StatusBadGateway)
		return
	}
	resp, body, err := parseStatsAnswer(answer, r.Method)
	if err != nil {
		http.Error(w, "incuslb stats: "+err.Error(), http.StatusBadGateway)
		return
	}
	for k, vs := range resp.Header {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length":
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	if r.Method != http.MethodHead {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// parseStatsAnswer reads an HTTP answer (whole, the server closed after
// it) of at most maxStatsAnswer bytes, and its body.
func parseStatsAnswer(answer, method string) (*http.Response, []byte, error) {
	if len(answer) > maxStatsAnswer {
		return nil, nil, fmt.Errorf("the answer is larger than %d bytes", maxStatsAnswer)
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), &http.Request{Method: method})
	if err != nil {
		return nil, nil, fmt.Errorf("reading HAProxy's answer: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("reading HAProxy's answer: %w", err)
	}
	return resp, body, nil
}
