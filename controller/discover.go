package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// discovery is what one look at Incus found.
type discovery struct {
	members map[string][]haproxy.Member // by pool
	waiting int                         // selected, running, no address yet
	seen    map[string]incus.Instance   // every listed instance, by project/name
	// labels are the weight labels of every member, by pool and name.
	labels map[string]map[string]memberLabels
	// problems are the labels that could not be read (see weightLabel).
	problems []string
}

// fullListEvery bounds how long discovery may take the addresses of
// running members from the running config instead of from Incus.
const fullListEvery = time.Minute

// discover lists the members of every selector pool: running instances
// matching the selector with a global address of the pool's family on the
// pool's NIC (see memberAddress). It
// makes one list call per project, however many pools and instances there
// are, and lists the whole project (leavers are looked up in it).
//
// Listing with state makes the server compute every instance's addresses,
// which dominates a pass. So most passes list without state, take the
// address of a member that still runs from prev (the running config), and
// ask Incus only for newcomers' addresses; at least every fullListEvery (and
// on the first pass) the addresses all come from Incus, which catches an
// address that changed under a running instance.
func (a *Applier) discover(ctx context.Context, lb *specs.LoadBalancer, l *listing, prev haproxy.Layout) (*discovery, error) {
	d := &discovery{members: map[string][]haproxy.Member{}, seen: map[string]incus.Instance{},
		labels: map[string]map[string]memberLabels{}}
	bad := map[string]bool{}
	for _, project := range l.projects {
		pools := l.pools[project]
		insts := l.insts[project]
		for i := range insts {
			a.unreachable(&insts[i]) // before any call that would reach it
		}
		if !l.full {
			var err error
			if insts, err = a.addresses(ctx, project, insts, pools, prev); err != nil {
				return nil, err
			}
		}
		for i := range insts {
			// An instance Incus is shutting down cleanly leaves at once,
			// drained (see leavers): its network goes away a second or two
			// into `incus stop`, before Incus reports it stopped.
			if insts[i].Running() && a.stopping(project, insts[i].Name) {
				insts[i].Status = statusStopping
			}
			d.seen[project+"/"+insts[i].Name] = insts[i]
		}
		for _, p := range pools {
			for _, inst := range insts {
				picked, canary := selects(p, inst.Config)
				if !picked ||
					(inst.Project == lb.Spec.Instance.Project && slices.Contains(lb.InstanceNames(), inst.Name)) {
					continue
				}
				addr := memberAddress(&inst, p)
				if inst.Running() && addr == "" {
					d.waiting++
				}
				if !inst.Running() || addr == "" || inst.Config[DrainKey] == "true" {
					continue
				}
				d.members[p.Name] = append(d.members[p.Name], haproxy.Member{Name: inst.Name, Address: addr})
				w, problem := weightLabel(inst)
				if problem != "" && !bad[problem] {
					bad[problem] = true
					d.problems = append(d.problems, problem)
				}
				if d.labels[p.Name] == nil {
					d.labels[p.Name] = map[string]memberLabels{}
				}
				d.labels[p.Name][inst.Name] = memberLabels{weight: w, canary: canary}
			}
		}
	}
	if l.full {
		a.fullListAt.set(lb.Metadata.Name, a.now())
	}
	return d, nil
}

// listing is the instances of every project a selector pool looks in, as
// one list call per project returned them.
type listing struct {
	projects []string
	pools    map[string][]*specs.Pool // by project
	insts    map[string][]incus.Instance
	full     bool // listed with their state (addresses)
}

// list makes the list calls of discovery, one per project, in parallel.
// It needs nothing from the LB instance, so a pass runs it beside its
// reads of the instance and of HAProxy.
func (a *Applier) list(ctx context.Context, lb *specs.LoadBalancer) (*listing, error) {
	l := &listing{pools: map[string][]*specs.Pool{}, insts: map[string][]incus.Instance{}}
	for i := range lb.Spec.Pools {
		p := &lb.Spec.Pools[i]
		if len(p.Selector) == 0 {
			continue
		}
		if _, ok := l.pools[p.Project]; !ok {
			l.projects = append(l.projects, p.Project)
		}
		l.pools[p.Project] = append(l.pools[p.Project], p)
	}
	last, listed := a.fullListAt.get(lb.Metadata.Name)
	l.full = !listed || a.now().Sub(last) >= fullListEvery
	results := make([][]incus.Instance, len(l.projects))
	errs := make([]error, len(l.projects))
	cached := make([]bool, len(l.projects))
	var wg sync.WaitGroup
	for i, project := range l.projects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], cached[i], errs[i] = a.listProject(ctx, project, l.full)
			if errs[i] != nil {
				errs[i] = fmt.Errorf("pool %s: %w", l.pools[project][0].Name, errs[i])
			}
		}()
	}
	wg.Wait()
	for i, project := range l.projects {
		l.insts[project] = results[i]
		if cached[i] {
			l.full = false // the addresses come from the running config
		}
	}
	return l, errors.Join(errs...)
}

// lostListWait bounds a list call while a cluster member is lost: Incus
// asks every member for its instances (30 s timeout) until it marks the
// lost one offline (cluster.offline_threshold, 20 s by default).
const lostListWait = time.Second

// lostListWaitAlready is that bound when a member was lost before the
// call began: Incus then answers at once only if it has marked the member
// offline already; otherwise every call waits on it, so the pass does not
// wait long for a listing newer than the last one.
const lostListWaitAlready = 250 * time.Millisecond

// listProject lists a project's instances. While a cluster member is lost
// (or once one is found lost during the call) and the call has not
// answered within lostListWait, it returns the last listing of the
// project instead (cached): the lost member's instances then leave their
// pools (see unreachable) without waiting for Incus, and other changes wait
// for a listing that answers.
func (a *Applier) listProject(ctx context.Context, project string, state bool) ([]incus.Instance, bool, error) {
	if a.Members == nil || !a.Members.Clustered() {
		// No member to lose: no copy of each list kept.
		insts, err := a.Incus.ListInstances(ctx, project, state)
		return insts, false, err
	}
	last, haveLast := a.listings.get(project)
	wait := lostListWait
	if len(a.Members.LostMembers()) > 0 {
		wait = lostListWaitAlready
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		insts []incus.Instance
		err   error
	}
	done := make(chan result, 1)
	go func() {
		insts, err := a.Incus.ListInstances(lctx, project, state)
		done <- result{insts, err}
	}()
	start := time.Now()
	t := time.NewTicker(lostCheckEvery)
	defer t.Stop()
	for {
		select {
		case r := <-done:
			if r.err == nil {
				a.listings.set(project, slices.Clone(r.insts))
			}
			return r.insts, false, r.err
		case <-t.C:
			if lost := a.Members.LostMembers(); haveLast && len(lost) > 0 && time.Since(start) >= wait {
				a.Log.Info("the instance list waits on a lost cluster member: using the last one", "project", project, "lost", lost)
				return slices.Clone(last), true, nil
			}
		}
	}
}

// addresses fills in the addresses of the running instances that pools
// select, and of the running members of prev (a member that lost its label
// is drained, which needs its address): from prev for a member already in
// a slot, from Incus (in parallel) for the others.
func (a *Applier) addresses(ctx context.Context, project string, insts []incus.Instance, pools []*specs.Pool, prev haproxy.Layout) ([]incus.Instance, error) {
	type slotAddr struct{ nic, addr string }
	known := map[string][]slotAddr{} // member -> its addresses in the running config
	for _, p := range pools {
		for _, s := range prev[p.Name] {
			if !s.Parked() {
				known[s.Member] = append(known[s.Member], slotAddr{p.NIC, s.Address})
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(insts))
	for i := range insts {
		inst := &insts[i]
		selected := false
		for _, p := range pools {
			picked, _ := selects(p, inst.Config)
			selected = selected || picked
		}
		addrs, isMember := known[inst.Name]
		if !inst.Running() || (!selected && !isMember) {
			continue
		}
		if isMember {
			// Its addresses in the slots it holds; every pool that selects
			// it must find one of its family there, or Incus is asked (a
			// member of an ipv4 pool that another, ipv6, pool selects).
			inst.Addresses, inst.Addresses6 = map[string][]string{}, map[string][]string{}
			for _, a := range addrs {
				if !slices.Contains(inst.Addresses[a.nic], a.addr) && !slices.Contains(inst.Addresses6[a.nic], a.addr) {
					setAddress(inst, a.nic, a.addr)
				}
			}
			complete := true
			for _, p := range pools {
				if picked, _ := selects(p, inst.Config); picked && memberAddress(inst, p) == "" {
					complete = false
				}
			}
			if complete {
				continue
			}
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got, err := a.Incus.GetInstance(ctx, project, insts[i].Name, true)
			if errors.Is(err, incus.ErrNotFound) {
				return // deleted meanwhile
			}
			if err != nil {
				errs[i] = err
				return
			}
			insts[i] = *got
		}(i)
	}
	wg.Wait()
	return insts, errors.Join(errs...)
}

func matches(config, selector map[string]string) bool {
	for k, v := range selector {
		if config[k] != v {
			return false
		}
	}
	return true
}

// DrainKey, set to "true" on a member instance, takes it out of its pools
// gracefully.
const DrainKey = "user.incuslb.drain"

// statusStopping marks, in a discovery, a running instance Incus has begun
// to shut down cleanly.
const statusStopping = "Stopping"

// stoppingFor bounds how long a stop's event keeps its instance
// out of the pools when no instance-stopped follows (a stop that failed).
const stoppingFor = 2 * time.Minute

// InstanceEvent takes what no level-triggered read can see: that Incus has
// begun to stop an instance (the stop or restart operation starting, a
// second or two before instance-shutdown). Until it stops, starts again or
// stoppingFor passes, the instance is no pool's member (it drains). Every
// other event only clears that.
func (a *Applier) InstanceEvent(ev incus.LifecycleEvent) {
	key := ev.Project + "/" + ev.Name
	switch ev.Action {
	case "instance-shutdown", incus.ActionStopping:
		a.shuttingDown.set(key, a.now())
	case "instance-stopped", "instance-started", "instance-restarted", "instance-deleted":
		a.shuttingDown.remove(key)
	}
}

func (a *Applier) stopping(project, name string) bool {
	at, ok := a.shuttingDown.get(project + "/" + name)
	return ok && a.now().Sub(at) < stoppingFor
}
