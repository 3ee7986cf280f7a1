package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/incus"
)

// EventSource is where lifecycle events come from. *incus.Client is one.
type EventSource interface {
	WatchLifecycle(ctx context.Context, connected func(), handle func(incus.LifecycleEvent)) error
}

// Runner is the long-running loop: it turns triggers (Incus events, spec
// changes, the periodic resync) into requests on a queue, and runs the
// reconciler on them with a few workers.
type Runner struct {
	Store      *Store
	Reconciler *LBReconciler
	Events     EventSource
	Log        logr.Logger
	// Resync runs every LoadBalancer this often, whatever happened. Default 5m.
	Resync time.Duration
	// SpecPoll is how often the spec and certificate files are checked for
	// changes. Default 2s.
	SpecPoll time.Duration
	// Workers run reconciles for different LBs in parallel. Default 2.
	Workers int
	// Git, when set, is where the specs come from: Store follows the
	// commit it last exported. It is fetched every GitInterval and on
	// SyncGit (the webhook).
	Git         *GitSource
	GitInterval time.Duration

	syncs chan string // pending git syncs, coalesced

	queue     *Queue
	connected atomic.Bool
	synced    atomic.Bool
}

// Ready reports whether the runner has loaded its specs, subscribed to
// Incus events and finished a first pass over every LoadBalancer.
func (r *Runner) Ready() bool { return r.connected.Load() && r.synced.Load() }

// Run runs until ctx ends, then lets the passes under way finish (for a few
// seconds at most) and returns.
func (r *Runner) Run(ctx context.Context) error {
	r.queue = NewQueue()
	if r.Resync == 0 {
		r.Resync = 5 * time.Minute
	}
	if r.SpecPoll == 0 {
		r.SpecPoll = 2 * time.Second
	}
	if r.Workers == 0 {
		r.Workers = 2
	}
	r.syncs = make(chan string, 1)
	if r.Git != nil {
		r.syncGit(ctx, "start")
	}
	if _, err := r.Store.Reload(); err != nil {
		r.Log.Error(err, "some spec files are invalid; their LoadBalancers are reported Degraded")
	}
	r.enqueueAll()

	// Reconciles get a context that outlives ctx by a grace period, so that
	// a pass under way at shutdown finishes instead of stopping half-way.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	var wg sync.WaitGroup
	for i := 0; i < r.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(work)
		}()
	}
	wg.Add(2)
	go func() { defer wg.Done(); r.watchEvents(ctx) }()
	go func() { defer wg.Done(); r.watchTime(ctx) }()
	if r.Git != nil {
		wg.Add(1)
		go func() { defer wg.Done(); r.watchGit(ctx) }()
	}

	<-ctx.Done()
	r.Log.Info("shutting down: finishing the passes under way")
	r.queue.ShutDown()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cancelWork()
		<-done
	}
	return nil
}

func (r *Runner) enqueueAll() {
	for _, name := range r.Store.Names() {
		r.queue.Add(name)
	}
}

// work takes names off the queue and reconciles them.
func (r *Runner) work(ctx context.Context) {
	for {
		name, ok := r.queue.Get()
		if !ok {
			return
		}
		res, err := r.Reconciler.Reconcile(ctx, Request{Name: name})
		switch {
		case err != nil && IsTerminal(err):
			r.Log.Error(err, "not retrying until the spec changes", "lb", name)
			r.queue.Forget(name)
		case err != nil:
			r.Log.Error(err, "reconcile failed; retrying with backoff", "lb", name)
			r.queue.AddRateLimited(name)
		default:
			r.queue.Forget(name)
			if res.RequeueAfter > 0 {
				r.queue.AddAfter(name, res.RequeueAfter)
			}
		}
		r.queue.Done(name)
		if !r.synced.Load() && r.queue.Len() == 0 {
			r.synced.Store(true)
		}
	}
}

// watchEvents subscribes to Incus lifecycle events, re-subscribing with
// backoff whenever the stream breaks, and resyncs everything after every
// (re)connect, since events were missed meanwhile.
func (r *Runner) watchEvents(ctx context.Context) {
	for failures := 0; ctx.Err() == nil; {
		err := r.Events.WatchLifecycle(ctx, func() {
			r.connected.Store(true)
			if failures > 0 {
				r.Log.Info("reconnected to Incus events; resyncing every LoadBalancer")
			}
			failures = 0
			r.enqueueAll()
		}, r.onEvent)
		r.connected.Store(false)
		if ctx.Err() != nil {
			return
		}
		delay := Backoff(failures)
		failures++
		r.Log.Error(err, "Incus events lost; reconnecting", "in", delay.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// onEvent maps an instance event to the LoadBalancers it can affect: the
// one whose instance it is, and every one with a selector pool in its
// project. The event's content is not used beyond that: the reconciler
// reads the state itself.
func (r *Runner) onEvent(ev incus.LifecycleEvent) {
	switch ev.Action {
	case "instance-started", "instance-stopped", "instance-shutdown", "instance-deleted", "instance-created",
		"instance-updated", "instance-restarted", "instance-renamed":
	default:
		return
	}
	for _, lb := range r.Store.Valid() {
		in := lb.Spec.Instance
		if ev.Project == in.Project && ev.Name == in.Name {
			// Our own status writes show up as instance-updated.
			if ev.Action != "instance-updated" {
				r.queue.Add(lb.Metadata.Name)
			}
			continue
		}
		for _, p := range lb.Spec.Pools {
			if len(p.Selector) > 0 && p.Project == ev.Project {
				r.Reconciler.EventSeen(lb.Metadata.Name, ev.Time)
				r.queue.Add(lb.Metadata.Name)
				break
			}
		}
	}
}

// watchTime polls the spec files and runs the periodic resync.
func (r *Runner) watchTime(ctx context.Context) {
	specs := time.NewTicker(r.SpecPoll)
	defer specs.Stop()
	resync := time.NewTicker(r.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-specs.C:
			changed, err := r.Store.Reload()
			if err != nil {
				r.Log.Error(err, "a spec file is invalid")
			}
			for _, name := range changed {
				r.Log.Info("spec changed", "lb", name)
				r.queue.Add(name)
			}
		case <-resync.C:
			r.enqueueAll()
		}
	}
}

// SyncGit asks for a fetch of the git source soon; requests made while one
// is pending coalesce into it. It never blocks (the webhook calls it).
func (r *Runner) SyncGit(reason string) {
	select {
	case r.syncs <- reason:
	default:
	}
}

// watchGit fetches on every SyncGit and every GitInterval (the fallback for
// missed webhooks).
func (r *Runner) watchGit(ctx context.Context) {
	interval := r.GitInterval
	if interval <= 0 {
		interval = time.Minute
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case reason := <-r.syncs:
			r.syncGit(ctx, reason)
		case <-tick.C:
			r.syncGit(ctx, "poll")
		}
	}
}

// syncGit fetches, and when the branch moved, points the store at the new
// commit and queues every LoadBalancer it changed (removed ones included).
func (r *Runner) syncGit(ctx context.Context, reason string) {
	moved, err := r.Git.Sync(ctx)
	if err != nil {
		r.Log.Error(err, "git fetch failed; the last fetched commit stays applied", "trigger", reason)
		return
	}
	if !moved {
		return
	}
	sha, path := r.Git.Revision()
	r.Log.Info("fetched a new commit", "commit", sha, "trigger", reason)
	r.Store.SetSource(path, sha)
	changed, err := r.Store.Reload()
	if err != nil {
		r.Log.Error(err, "the commit has invalid spec files; their LoadBalancers are reported Degraded", "commit", sha)
	}
	for _, name := range changed {
		r.queue.Add(name)
	}
}
