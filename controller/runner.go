package controller

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// EventSource is where lifecycle events come from. *incus.Client is one.
type EventSource interface {
	WatchLifecycle(ctx context.Context, connected func(), handle func(incus.LifecycleEvent)) error
}

// LBReconcilerInterface is what the Runner needs of the reconciler:
// *LBReconciler, or a fake in tests.
type LBReconcilerInterface interface {
	Reconciler
	// EventSeen notes that an Incus event at time at may affect name.
	EventSeen(name string, at time.Time)
	// InstanceEvent hands over an instance event itself, for what no read
	// of Incus shows (an instance being shut down).
	InstanceEvent(ev incus.LifecycleEvent)
}

// Runner is the long-running loop: it turns triggers (Incus events, spec
// changes, the periodic resync) into requests on a queue, and runs the
// reconciler on them with a pool of workers.
//
// One goroutine owns the spec store (storeLoop): the spec poll and the git
// source hand it snapshots, and it applies them in order, so an older read
// never overwrites a newer commit.
type Runner struct {
	Store      *Store
	Reconciler LBReconcilerInterface
	Events     EventSource
	Log        logr.Logger
	// Resync runs every LoadBalancer this often, whatever happened. Default 5m.
	Resync time.Duration
	// SpecPoll is how often the spec and certificate files are checked for
	// changes. Default 2s.
	SpecPoll time.Duration
	// Workers run reconciles for different LBs in parallel. A pass that
	// hangs holds one worker until its deadline (Applier.PassTimeout), so
	// there are more workers than stuck LBs are likely. Default 16.
	Workers int
	// Git, when set, is where the specs come from: Store follows the
	// commit it last exported. It is fetched every GitInterval and on
	// SyncGit (the webhook).
	Git         *GitSource
	GitInterval time.Duration
	// Leader, when set, gates the passes: a controller that does not
	// lead keeps its store and event stream (its caches) warm and makes
	// no pass; call Lead when it starts leading.
	Leader Leader
	// Members, when set, is probed while the Runner runs; every
	// LoadBalancer gets a pass when a member is lost or comes back.
	Members *MemberWatch

	once      sync.Once
	syncs     chan string   // pending git syncs, coalesced
	snapshots chan snapshot // git exports for the store loop
	queue     *Queue
	connected atomic.Bool

	mu         sync.Mutex
	passed     map[string]bool // LBs that finished a pass since start
	specSynced time.Time       // the last time the store read its source
}

// snapshot is a new source for the store: a commit's export.
type snapshot struct {
	path, revision string
	skipped        specs.ErrorList // files the export left out
}

func (r *Runner) init() {
	r.once.Do(func() {
		r.syncs = make(chan string, 1)
		r.snapshots = make(chan snapshot)
		r.queue = NewQueue()
		r.passed = map[string]bool{}
		if r.Resync == 0 {
			r.Resync = 5 * time.Minute
		}
		if r.SpecPoll == 0 {
			r.SpecPoll = 2 * time.Second
		}
		if r.Workers == 0 {
			r.Workers = 16
		}
		if r.GitInterval <= 0 {
			r.GitInterval = time.Minute
		}
	})
}

// Ready reports whether the runner has subscribed to Incus events, every
// LoadBalancer of the store has finished a pass (with none, that holds),
// and each source synced recently: the spec files read within three polls,
// and with git, a fetch within three intervals.
func (r *Runner) Ready() bool {
	r.init()
	ok, _ := r.readiness(time.Now())
	return ok
}

// NotReady says why the runner is not ready ("" when it is).
func (r *Runner) NotReady() string {
	r.init()
	_, why := r.readiness(time.Now())
	return why
}

func (r *Runner) readiness(now time.Time) (bool, string) {
	if !r.connected.Load() {
		return false, "not subscribed to Incus events"
	}
	r.mu.Lock()
	synced, passed := r.specSynced, r.passed
	var waiting []string
	for _, name := range r.Store.Names() {
		if !passed[name] {
			waiting = append(waiting, name)
		}
	}
	r.mu.Unlock()
	switch {
	case synced.IsZero() || now.Sub(synced) > 3*r.SpecPoll:
		return false, "the spec files were not read recently"
	case r.Git != nil && now.Sub(r.Git.LastSuccess()) > 3*r.GitInterval:
		return false, "no successful git fetch recently"
	case len(waiting) > 0 && r.leads():
		return false, fmt.Sprintf("no pass finished yet for %v", waiting)
	}
	return true, ""
}

// Run runs until ctx ends, then lets the passes under way finish (for a few
// seconds at most) and returns.
func (r *Runner) Run(ctx context.Context) error {
	r.init()
	if r.Git != nil {
		if snap, ok := r.fetch(ctx, "start"); ok {
			r.Store.SetSource(snap.path, snap.revision, snap.skipped)
		}
	}
	r.reload("start")
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
	go func() { defer wg.Done(); r.storeLoop(ctx) }()
	if r.Git != nil {
		wg.Add(1)
		go func() { defer wg.Done(); r.watchGit(ctx) }()
	}
	if r.Members != nil {
		r.Members.OnChange = r.enqueueAll
		wg.Add(1)
		go func() { defer wg.Done(); r.Members.Run(ctx) }()
	}

	<-ctx.Done()
	r.Log.Info("shutting down: finishing the passes under way")
	r.queue.ShutDown()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(shutdownGrace):
		cancelWork()
		<-done
	}
	return nil
}

// Lead is called when this controller starts leading: every LoadBalancer
// gets a pass.
// Enqueue asks for a pass of the LoadBalancer name (its ACME
// certificates changed).
func (r *Runner) Enqueue(name string) {
	r.init()
	r.queue.Add(name)
}

func (r *Runner) Lead() {
	r.init()
	r.Log.Info("leading: reconciling every LoadBalancer")
	r.enqueueAll()
}

// shutdownGrace is how long the passes under way get at shutdown before
// their context is cancelled; well inside the unit's TimeoutStopSec.
const shutdownGrace = 5 * time.Second

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
		if r.Leader != nil {
			if leading, _ := r.Leader.Leading(); !leading {
				r.queue.Forget(name) // Lead enqueues everything again
				r.queue.Done(name)
				continue
			}
		}
		res, err := r.reconcile(ctx, name)
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
		r.mu.Lock()
		r.passed[name] = true
		r.mu.Unlock()
		r.queue.Done(name)
	}
}

// reconcile runs one pass; a panic in it is that LB's failure, not the
// controller's.
func (r *Runner) reconcile(ctx context.Context, name string) (res Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.Log.Error(fmt.Errorf("%v", p), "a pass panicked; reported as a failure of this LoadBalancer", "lb", name, "stack", string(debug.Stack()))
			res, err = Result{}, fmt.Errorf("internal error (panic): %v", p)
		}
	}()
	return r.Reconciler.Reconcile(ctx, Request{Name: name})
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
		"instance-updated", "instance-restarted", "instance-renamed", incus.ActionStopping:
	default:
		return
	}
	r.Reconciler.InstanceEvent(ev)
	for _, lb := range r.Store.Valid() {
		if ev.Project == lb.Spec.Instance.Project && slices.Contains(lb.InstanceNames(), ev.Name) {
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

// storeLoop is the one goroutine that changes the store: it polls the
// spec files, applies the git source's snapshots in the order they were
// fetched, and runs the periodic resync.
func (r *Runner) storeLoop(ctx context.Context) {
	poll := time.NewTicker(r.SpecPoll)
	defer poll.Stop()
	resync := time.NewTicker(r.Resync)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			r.reload("poll")
		case snap := <-r.snapshots:
			r.Log.Info("applying a new commit", "commit", snap.revision)
			r.Store.SetSource(snap.path, snap.revision, snap.skipped)
			r.reload("git")
		case <-resync.C:
			r.enqueueAll()
		}
	}
}

// reload reads the store's source and queues the LoadBalancers it changed.
func (r *Runner) reload(trigger string) {
	changed, err := r.Store.Reload()
	if err != nil {
		r.Log.Error(err, "some specs are invalid; their LoadBalancers are reported Degraded", "trigger", trigger,
			"commit", r.Store.Revision())
	}
	r.mu.Lock()
	r.specSynced = time.Now()
	r.mu.Unlock()
	for _, name := range changed {
		r.Log.Info("spec changed", "lb", name, "trigger", trigger)
		r.queue.Add(name)
	}
}

// leads reports whether this controller makes passes: always without an
// election.
func (r *Runner) leads() bool {
	if r.Leader == nil {
		return true
	}
	leading, _ := r.Leader.Leading()
	return leading
}
