// Command testserver is the backend the e2e suite runs in its containers.
//
// In app mode it answers on each of -ports with its name: every response
// carries "X-Served-By: NAME" and "X-Remote-Addr: IP:PORT" (the peer it
// saw: the LB) and the body "NAME PATH\n"; /api/v1/health and
// /health answer 200, or 503 while the file /run/testserver.sick exists;
// /slow?d=DURATION answers after that long (for drain tests); /ws is a
// WebSocket that first sends NAME, then echoes every message it gets; any
// path with ?echo=HEADER answers "HEADER=VALUE" of that request header.
//
// In forgejo mode it behaves like the seed's Forgejo: HTTPS only on -addr
// with a self-signed certificate made at start, plain HTTP gets 400, a
// request whose Host is not -host gets 400, and the right Host gets a 302
// to /login (which answers 200).
//
// With -ssh it also serves SSH (ssh.go).
// With -tls-cert, -tls-key and -client-ca, app mode serves HTTPS on its
// ports and requires a client certificate issued by the CA in -client-ca
// (mutual TLS); every response then carries "X-Client-Cert: CN=NAME
// serial=HEX" of the certificate the client presented.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	hostname, _ := os.Hostname()
	name := flag.String("name", hostname, "name to answer with")
	mode := flag.String("mode", "app", "app or forgejo")
	ports := flag.String("ports", "8080,8082", "app mode: comma-separated ports")
	addr := flag.String("addr", ":3000", "forgejo mode: listen address")
	host := flag.String("host", "forgejo.example.org", "forgejo mode: the Host it serves")
	sshAddr := flag.String("ssh", "", "also serve SSH on this address (see ssh.go)")
	sshProxy := flag.Bool("ssh-proxy", false, "the SSH listener expects a PROXY protocol header")
	tlsCert := flag.String("tls-cert", "", "app mode: serve HTTPS with this certificate (PEM)")
	tlsKey := flag.String("tls-key", "", "app mode: the key of -tls-cert (PEM)")
	clientCA := flag.String("client-ca", "", "app mode, with -tls-cert: require a client certificate from this CA (PEM)")
	flag.Parse()
	if *sshAddr != "" {
		go serve(func() error { return serveSSH(*sshAddr, *name, *sshProxy) })
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var servers []*http.Server
	switch *mode {
	case "app":
		mtls, err := mutualTLS(*tlsCert, *tlsKey, *clientCA)
		if err != nil {
			log.Fatal(err)
		}
		for _, p := range strings.Split(*ports, ",") {
			srv := &http.Server{Addr: ":" + p, Handler: app(*name), ReadHeaderTimeout: 10 * time.Second}
			servers = append(servers, srv)
			if mtls == nil {
				go serve(srv.ListenAndServe)
				continue
			}
			srv.TLSConfig, srv.Handler = mtls, echoClientCert(srv.Handler)
			go serve(func() error { return srv.ListenAndServeTLS("", "") })
		}
	case "forgejo":
		cert, err := selfSigned(*host)
		if err != nil {
			log.Fatal(err)
		}
		srv := &http.Server{Addr: *addr, Handler: forgejo(*name, *host), ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
		servers = append(servers, srv)
		go serve(func() error { return srv.ListenAndServeTLS("", "") })
	default:
		log.Fatalf("unknown mode %q", *mode)
	}
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
}

func serve(f func() error) {
	if err := f(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// sickFile makes the health endpoints fail while it exists.
const sickFile = "/run/testserver.sick"

func app(name string) http.Handler {
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", name)
		w.Header().Set("X-Remote-Addr", r.RemoteAddr)
		if h := r.URL.Query().Get("echo"); h != "" {
			fmt.Fprintf(w, "%s=%s\n", h, r.Header.Get(h))
			return
		}
		switch r.URL.Path {
		case "/ws":
			conn, err := upgrader.Upgrade(w, r, http.Header{"X-Served-By": {name}}) // a hijacked response: w.Header() is not sent
			if err != nil {
				return
			}
			defer conn.Close()
			if conn.WriteMessage(websocket.TextMessage, []byte(name)) != nil {
				return
			}
			for {
				kind, msg, err := conn.ReadMessage()
				if err != nil || conn.WriteMessage(kind, msg) != nil {
					return
				}
			}
		case "/api/v1/health", "/health":
			if _, err := os.Stat(sickFile); err == nil {
				http.Error(w, "sick", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
			return
		case "/slow":
			d, err := time.ParseDuration(r.URL.Query().Get("d"))
			if err != nil || d > time.Minute {
				http.Error(w, "d must be a duration up to 1m", http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "%s %s\n", name, r.URL.Path)
	})
}

func forgejo(name, host string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", name)
		h, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			h = r.Host
		}
		if !strings.EqualFold(h, host) {
			http.Error(w, "unexpected Host "+r.Host, http.StatusBadRequest)
			return
		}
		if r.URL.Path == "/login" {
			fmt.Fprintf(w, "%s login\n", name)
			return
		}
		http.Redirect(w, r, "/login", http.StatusFound)
	})
}

func selfSigned(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// mutualTLS is the TLS config of app mode with -tls-cert: nil without it.
func mutualTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	if certFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no certificate", caFile)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}, nil
}

// echoClientCert says which client certificate the request came with.
func echoClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			w.Header().Set("X-Client-Cert", fmt.Sprintf("CN=%s serial=%x", c.Subject.CommonName, c.SerialNumber))
		}
		next.ServeHTTP(w, r)
	})
}
