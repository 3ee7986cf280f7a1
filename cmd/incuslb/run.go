package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/incus"
)

func (e *env) run(args []string) error {
	fs := e.newFlags("run", "run --spec FILE|DIR [--listen 127.0.0.1:9090] [--resync 5m] [--remote NAME]")
	specPath := fs.String("spec", "", "spec file or directory of specs (watched for changes, with the certificates they name)")
	listen := fs.String("listen", "127.0.0.1:9090", "address for /metrics, /healthz and /readyz (empty: none)")
	resync := fs.Duration("resync", 5*time.Minute, "reconcile every LoadBalancer at least this often")
	workers := fs.Int("workers", 2, "LoadBalancers reconciled in parallel")
	remote := fs.String("remote", "", "incus CLI remote to use (default: the local unix socket)")
	forceReload := fs.Bool("force-reload", false, "apply every change with a reload instead of the runtime API (for comparison benchmarks)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *specPath == "" {
		return usageErrorf("--spec FILE|DIR is required")
	}
	if *resync <= 0 || *workers < 1 {
		return usageErrorf("--resync must be positive and --workers at least 1")
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(e.stderr, nil))

	c, err := incus.Connect(e.ctx, *remote)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := controller.NewMetrics(reg)
	store := &controller.Store{Path: *specPath}
	applier := &controller.Applier{Incus: c, Log: log, Metrics: metrics, ForceReload: *forceReload}
	runner := &controller.Runner{
		Store:      store,
		Reconciler: &controller.LBReconciler{Store: store, Applier: applier, Log: log, Metrics: metrics},
		Events:     c,
		Log:        log,
		Resync:     *resync,
		Workers:    *workers,
	}

	var srv *http.Server
	if *listen != "" {
		ln, err := net.Listen("tcp", *listen)
		if err != nil {
			return err
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !runner.Ready() {
				http.Error(w, "not ready: waiting for Incus events or the first pass", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "HTTP listener failed")
			}
		}()
		log.Info("listening", "address", ln.Addr().String())
	}
	log.Info("incuslb run starting", "spec", *specPath, "incus", c.Name(), "resync", resync.String())
	err = runner.Run(e.ctx)
	if srv != nil {
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}
	log.Info("incuslb run stopped")
	return err
}
