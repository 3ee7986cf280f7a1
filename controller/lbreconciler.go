package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// LBReconciler reconciles LoadBalancers from a Store with an Applier.
type LBReconciler struct {
	Store   *Store
	Applier *Applier
	Log     logr.Logger
	Metrics *Metrics
	// Prune deletes the instance of a LoadBalancer removed from the specs
	// (see DecidePrune for when); without it the instance keeps running,
	// marked Orphaned.
	Prune bool
	// PruneGrace is how long a LoadBalancer must stay removed from the specs
	// before Prune deletes its instance. Default 15m (three default resyncs).
	PruneGrace time.Duration

	mu      sync.Mutex
	pending map[string]time.Time // earliest event not yet applied, by LB
}

// EventSeen notes that an Incus event may affect name, for the
// event-to-applied latency.
func (r *LBReconciler) EventSeen(name string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[string]time.Time{}
	}
	if t, ok := r.pending[name]; !ok || at.Before(t) {
		r.pending[name] = at
	}
}

// InstanceEvent implements LBReconcilerInterface.
func (r *LBReconciler) InstanceEvent(ev incus.LifecycleEvent) { r.Applier.InstanceEvent(ev) }

func (r *LBReconciler) takePending(name string) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.pending[name]
	delete(r.pending, name)
	return t, ok
}

// Reconcile implements Reconciler.
func (r *LBReconciler) Reconcile(ctx context.Context, req Request) (Result, error) {
	start := time.Now()
	sp, ok := r.Store.Get(req.Name)
	if !ok {
		return r.orphaned(ctx, req.Name)
	}
	if sp.Err != nil {
		if sp.LB != nil {
			if err := r.Applier.ReportInvalid(ctx, sp.LB, sp.Err); err != nil {
				r.Log.Error(err, "recording the invalid spec", "lb", req.Name)
			}
		}
		r.Metrics.reconciled(req.Name, "terminal", time.Since(start))
		return Result{}, Terminal(fmt.Errorf("invalid spec: %w", sp.Err))
	}
	plan, err := r.Applier.Apply(ctx, sp.LB, false)
	if err != nil {
		result := "error"
		if specs.Invalid(err) {
			result, err = "terminal", Terminal(err)
		}
		r.Metrics.reconciled(req.Name, result, time.Since(start))
		return Result{}, err
	}
	r.Metrics.reconciled(req.Name, "ok", time.Since(start))
	r.Metrics.succeeded(req.Name, time.Now())
	// Its HAProxy answers ACME challenges now: due orders may begin.
	r.Applier.ACME.Started(req.Name)
	// An event's effect is applied by the first pass that changes something;
	// a pass that only waits (for a DHCP address) keeps it pending.
	if plan.Changed() || plan.RequeueAfter == 0 {
		if at, ok := r.takePending(req.Name); ok && plan.Changed() {
			r.Metrics.applied(req.Name, time.Since(at))
		}
	}
	if plan.Changed() {
		r.Log.Info("reconciled", "lb", req.Name, "reload", string(plan.Reload), "detail", plan.ReloadDetail, "runtime", plan.Runtime,
			"took", time.Since(start).Truncate(time.Microsecond).String())
	}
	r.observeMembers(ctx, sp.LB)
	r.Metrics.setOldWorkers(req.Name, plan.OldWorkers)
	return Result{RequeueAfter: plan.RequeueAfter}, nil
}

// observeMembers sets the members gauge from HAProxy's live state.
func (r *LBReconciler) observeMembers(ctx context.Context, lb *specs.LoadBalancer) {
	if r.Metrics == nil {
		return
	}
	rt := r.Applier.Runtime(r.Applier.Primary(lb))
	if rt == nil {
		return
	}
	states, err := rt.ServersState(ctx, "")
	if err != nil {
		return
	}
	counts := map[[2]string]int{}
	for _, s := range states {
		if _, slot := haproxy.SlotIndex(s.Name); slot && s.State() == "MAINT" && parked(s) {
			continue
		}
		counts[[2]string{s.Backend, s.State()}]++
	}
	r.Metrics.setMembers(lb.Metadata.Name, counts)
}

// orphaned handles a LoadBalancer removed from the specs: its instance is
// marked Orphaned and left running, or with Prune deleted once DecidePrune
// allows it. An instance it does not own is never touched.
func (r *LBReconciler) orphaned(ctx context.Context, name string) (Result, error) {
	r.Applier.ACME.Forget(name)
	lb, ok := r.Store.Orphan(name)
	if !ok {
		return Result{}, nil
	}
	var res Result
	var errs []error
	for _, rep := range Replicas(lb) {
		got, err := r.orphanedInstance(ctx, name, rep)
		errs = append(errs, err)
		if got.RequeueAfter > 0 && (res.RequeueAfter == 0 || got.RequeueAfter < res.RequeueAfter) {
			res.RequeueAfter = got.RequeueAfter
		}
	}
	return res, errors.Join(errs...)
}

// orphanedInstance is orphaned for one instance of the LoadBalancer.
func (r *LBReconciler) orphanedInstance(ctx context.Context, name string, lb *specs.LoadBalancer) (Result, error) {
	in := lb.Spec.Instance
	log := r.Log.WithValues("lb", name, "instance", in.Project+"/"+in.Name)
	inst, err := r.Applier.Incus.GetInstance(ctx, in.Project, in.Name, false)
	if errors.Is(err, incus.ErrNotFound) {
		return Result{}, nil
	}
	if err != nil {
		return Result{}, err
	}
	owner := inst.Config[KeyLB]
	if owner != name {
		log.Info("LoadBalancer removed from the specs; its instance is not its own, left alone", "owner", owner)
		return Result{}, nil
	}
	if r.Prune {
		since, _ := r.Store.OrphanedSince(name)
		valid, invalid, orphans := r.Store.Counts()
		grace := r.PruneGrace
		if grace == 0 {
			grace = 15 * time.Minute
		}
		d := DecidePrune(name, owner, r.Applier.now().Sub(since), grace, valid+invalid, orphans)
		if d.Delete {
			log.Info("LoadBalancer removed from the specs: deleting its instance (--prune)", "why", d.Reason)
			return Result{}, r.Applier.Incus.DeleteInstance(ctx, in.Project, in.Name)
		}
		log.Info("LoadBalancer removed from the specs: not deleting its instance yet", "why", d.Reason)
		if err := r.markOrphaned(ctx, lb, inst, d.Reason); err != nil {
			return Result{}, err
		}
		return Result{RequeueAfter: d.Wait}, nil
	}
	log.Info("LoadBalancer removed from the specs: its instance keeps running, marked Orphaned (delete it, or run with --prune)")
	return Result{}, r.markOrphaned(ctx, lb, inst, "")
}

func (r *LBReconciler) markOrphaned(ctx context.Context, lb *specs.LoadBalancer, inst *incus.Instance, detail string) error {
	old := StatusFromConfig(inst.Config)
	st := old.Clone()
	msg := "no longer in the specs"
	if rev := r.Store.Revision(); rev != "" {
		msg += " at commit " + shortSHA(rev)
	}
	if detail != "" {
		msg += "; " + detail
	}
	st.SetCondition(Condition{Type: ConditionOrphaned, Status: "True", Reason: "RemovedFromSpecs", Message: truncate(msg, 1000),
		ObservedGeneration: st.Generation}, r.Applier.now())
	return r.Applier.writeStatus(ctx, lb, old, st)
}
