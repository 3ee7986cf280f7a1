package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/incus"
)

func (e *env) run(args []string) error {
	fs := e.newFlags("run", "run (--spec FILE|DIR | --git-repo URL [--git-branch B] [--git-path DIR]) [--listen 127.0.0.1:9090] [--resync 5m]")
	specPath := fs.String("spec", "", "spec file or directory of specs (watched for changes, with the certificates they name)")
	gitRepo := fs.String("git-repo", "", "git repository the specs come from (a path, file://, https:// or ssh URL), instead of --spec")
	gitBranch := fs.String("git-branch", "main", "branch of --git-repo to follow")
	gitPath := fs.String("git-path", ".", "directory of specs inside the repository")
	gitInterval := fs.Duration("git-interval", time.Minute, "fetch the branch this often (the fallback for missed webhooks)")
	gitDir := fs.String("git-dir", "/var/lib/incuslb/git", "where the local clone lives")
	stateDir := addStateDirFlag(fs)
	secretFile := fs.String("webhook-secret-file", "", "file holding the secret that signs webhook deliveries (enables POST /hooks/git)")
	insecure := fs.Bool("webhook-insecure", false, "serve POST /hooks/git without checking signatures (not for production)")
	prune := fs.Bool("prune", false, "delete the instance of a LoadBalancer removed from the specs once it has stayed removed for --prune-grace (default: keep it, marked Orphaned)")
	pruneGrace := fs.Duration("prune-grace", 0, "how long a LoadBalancer must stay removed before --prune deletes its instance (default: 3 resyncs)")
	listen := fs.String("listen", "127.0.0.1:9090", "address for /metrics, /healthz and /readyz (empty: none)")
	resync := fs.Duration("resync", 5*time.Minute, "reconcile every LoadBalancer at least this often")
	workers := fs.Int("workers", 16, "passes run in parallel (a pass stuck on Incus holds one until its deadline)")
	rootFlag := addCertRootFlag(fs, "")
	remote := fs.String("remote", "", "incus CLI remote to use (default: the local unix socket)")
	socketDir := fs.String("socket-dir", "/run/incuslb", "host directory of the HAProxy admin/master sockets of the LB instances (proxy devices)")
	forceReload := fs.Bool("force-reload", false, "apply every change with a reload instead of the runtime API (for comparison benchmarks)")
	pprofOn := fs.Bool("pprof", false, "also serve Go's profiles under /debug/pprof/ on --listen (goroutine dumps of a stalled pass; keep --listen on loopback)")
	memberProbe := fs.Duration("member-probe", controller.DefaultMemberProbe, "on a cluster, connect to every member's API this often; a member that fails twice in a row is lost and its instances leave their pools at once (0: wait for Incus to mark it offline)")
	lf := addLeaseFlags(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	if (*specPath == "") == (*gitRepo == "") {
		return usageErrorf("give either --spec FILE|DIR or --git-repo URL")
	}
	if *gitRepo == "" && (*secretFile != "" || *insecure) {
		return usageErrorf("the webhook needs --git-repo")
	}
	grace := *pruneGrace
	if grace == 0 {
		grace = 3 * *resync
	}
	// Certificates come from under --cert-root: by default the spec
	// directory, or with git /etc/incuslb, never the repository (whoever
	// can push must not choose which host files are read).
	root := *rootFlag
	if root == "" && *gitRepo != "" {
		root = "/etc/incuslb"
	}
	root, err := certRoot(root, *specPath)
	if err != nil {
		return err
	}
	if *specPath != "" {
		abs, err := filepath.Abs(*specPath)
		if err != nil {
			return err
		}
		*specPath = abs
	}
	if *resync <= 0 || *workers < 1 || *memberProbe < 0 {
		return usageErrorf("--resync must be positive, --workers at least 1 and --member-probe not negative")
	}
	log := logr.FromSlogHandler(slog.NewJSONHandler(e.stderr, nil))
	var secret []byte
	switch {
	case *secretFile != "":
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("--webhook-secret-file: %w", err)
		}
		if secret = bytes.TrimSpace(b); len(secret) == 0 {
			return fmt.Errorf("--webhook-secret-file %s is empty", *secretFile)
		}
	case *gitRepo != "" && !*insecure:
		log.Info("no --webhook-secret-file: POST /hooks/git is off; the branch is polled every --git-interval")
	case *insecure:
		log.Info("WARNING: --webhook-insecure: POST /hooks/git accepts unsigned deliveries; anyone who reaches the listener can trigger a fetch")
	}

	var git *controller.GitSource
	if *gitRepo != "" {
		var err error
		if git, err = controller.NewGitSource(*gitRepo, *gitBranch, *gitPath, *gitDir, log); err != nil {
			return usageErrorf("%v", err)
		}
	}
	c, err := incus.Connect(e.ctx, *remote)
	if err != nil {
		return err
	}
	log.Info("certificates are read from under --cert-root", "cert-root", root)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := controller.NewMetrics(reg)
	store := &controller.Store{Path: *specPath, CertRoot: root}
	applier := &controller.Applier{Incus: c, Log: log, Metrics: metrics, ForceReload: *forceReload, SocketDir: *socketDir, CertRoot: root,
		StateDir: *stateDir}
	applier.ACME = &controller.ACMEManager{StateDir: *stateDir, CertRoot: root, Applier: applier, Log: log.WithName("acme"), Metrics: metrics}
	if git != nil {
		metrics.SetGitLastFetch(git.LastSuccess)
	}
	var members *controller.MemberWatch
	if *memberProbe > 0 {
		members = &controller.MemberWatch{Members: c.ClusterMembers, Interval: *memberProbe, Log: log}
		applier.Members = members
	}
	el, err := lf.elector(c, log)
	if err != nil {
		return err
	}
	runner := &controller.Runner{
		Store:       store,
		Reconciler:  &controller.LBReconciler{Store: store, Applier: applier, Log: log, Metrics: metrics, Prune: *prune, PruneGrace: grace},
		Events:      c,
		Log:         log,
		Resync:      *resync,
		Workers:     *workers,
		Git:         git,
		GitInterval: *gitInterval,
		Members:     members,
	}
	applier.ACME.Requeue = runner.Enqueue
	if el != nil {
		applier.Leader, runner.Leader = el, el
		el.OnChange = func(leading bool, _ int64) {
			if leading {
				runner.Lead()
			}
		}
		ectx, stop := context.WithCancel(context.WithoutCancel(e.ctx))
		done := make(chan struct{})
		go func() { defer close(done); el.Run(ectx) }()
		go exportLease(ectx, el, metrics)
		// At the end: the passes under way finish (runner.Run returns),
		// then the lease is released so another controller takes over at
		// once.
		defer func() { stop(); <-done }()
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
			if why := runner.NotReady(); why != "" {
				http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
		if *pprofOn {
			mux.HandleFunc("GET /debug/pprof/", pprof.Index)
			mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		}
		mux.HandleFunc("POST /acme/renew/{lb}", func(w http.ResponseWriter, r *http.Request) {
			if !applier.ACME.Renew(r.PathValue("lb")) {
				http.Error(w, "no ACME certificates for this LoadBalancer", http.StatusNotFound)
				return
			}
			_, _ = w.Write([]byte("renewal ordered\n"))
		})
		if git != nil && (secret != nil || *insecure) {
			mux.Handle("POST /hooks/git", &controller.Webhook{Secret: secret, Branch: *gitBranch, Trigger: runner.SyncGit, Log: log})
		}
		srv = newHTTPServer(mux, defaultHTTPLimits())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error(err, "HTTP listener failed")
			}
		}()
		log.Info("listening", "address", ln.Addr().String())
	}
	log.Info("incuslb run starting", "lease", *lf.profile, "identity", *lf.identity, "spec", *specPath, "git", controller.RedactURL(*gitRepo), "branch", *gitBranch, "incus", c.Name(), "resync", resync.String())
	err = runner.Run(e.ctx)
	if srv != nil {
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}
	log.Info("incuslb run stopped")
	return err
}
