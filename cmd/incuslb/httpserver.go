package main

import (
	"net/http"
	"time"
)

// Limits of the --listen server (/metrics, /healthz, /readyz and the
// webhook). The webhook may face the network: no client may hold a
// connection or a goroutine for long, or make the server buffer much.
const (
	// httpReadHeaderTimeout bounds reading a request's headers (slowloris).
	httpReadHeaderTimeout = 5 * time.Second
	// httpReadTimeout bounds reading a whole request, body included: a body
	// trickled slower is cut off before the handler can act on it. The
	// webhook's body is at most 1 MiB, read in well under a second.
	httpReadTimeout = 10 * time.Second
	// httpWriteTimeout bounds writing a response (from the end of the
	// headers): a client that does not read is dropped.
	httpWriteTimeout = 10 * time.Second
	// httpIdleTimeout closes a kept-alive connection that stays idle.
	httpIdleTimeout = 60 * time.Second
	// httpMaxHeaderBytes bounds a request's headers (431 beyond; Go allows
	// 4 KiB of slack). Forges and Prometheus send a few hundred bytes.
	httpMaxHeaderBytes = 16 << 10
)

// httpLimits are the timeouts and size limits of the HTTP server; tests
// make them short.
type httpLimits struct {
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
}

// defaultHTTPLimits are the limits incuslb run uses.
func defaultHTTPLimits() httpLimits {
	return httpLimits{
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
	}
}

// newHTTPServer returns the server for --listen, serving h within limits.
// The webhook bounds its body itself (1 MiB, http.MaxBytesReader).
func newHTTPServer(h http.Handler, limits httpLimits) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		MaxHeaderBytes:    limits.MaxHeaderBytes,
	}
}
