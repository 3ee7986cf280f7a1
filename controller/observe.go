package controller

import (
	"context"
	"errors"
	"fmt"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// Observation is what a pass learned of an LB instance and of the HAProxy
// in it. Everything in it was read, never assumed: the file in the
// container is only a cache of what should run; what runs is what
// HAProxy's runtime API says.
type Observation struct {
	// Instance is nil when the instance does not exist.
	Instance *incus.Instance
	// Owner is the instance's user.incuslb.lb key ("" when it has none).
	Owner string

	// File is the config in the container (nil when absent, or when the
	// instance does not run).
	File []byte
	// Certs are the certificate files in the container and the
	// certificates HAProxy serves.
	Certs certObservation

	// HAProxy, through its runtime API. Answers is false when its master
	// does not answer (then the rest is zero).
	Answers bool
	Proc    haproxy.Processes
	// LoadedHash is the hash of the config the current worker loaded, ""
	// when that config is not one incuslb wrote.
	LoadedHash string
	// Servers is the live server table; StateText is the same as HAProxy
	// wrote it (for the server-state file of a reload).
	Servers   []haproxy.ServerState
	StateText string
	// Sessions by "backend/server".
	Sessions map[string]int
	// OldSessions are the streams of the old workers (reloads keep them
	// until their sessions end), by PID.
	OldSessions map[int][]haproxy.Session
}

// Exists reports whether the instance exists.
func (o *Observation) Exists() bool { return o.Instance != nil }

// Running reports whether the instance runs.
func (o *Observation) Running() bool { return o.Instance != nil && o.Instance.Running() }

// observeInstance reads the LB instance (without its state, which is
// costly) and its owner key. It writes nothing.
func (a *Applier) observeInstance(ctx context.Context, lb *specs.LoadBalancer, obs *Observation) error {
	in := lb.Spec.Instance
	if m, lost := a.onLostMember(in.Project, in.Name); lost {
		// Incus forwards a read of an instance to its member: it would
		// wait until Incus marks the member offline.
		return lostError(in.Project, in.Name, m, nil)
	}
	inst, err := a.Incus.GetInstance(ctx, in.Project, in.Name, false)
	switch {
	case errors.Is(err, incus.ErrNotFound):
		obs.Instance, obs.Owner = nil, ""
		return nil
	case err != nil:
		return err
	}
	a.locations.set(in.Project+"/"+in.Name, inst.Location)
	a.unreachable(inst)
	obs.Instance, obs.Owner = inst, inst.Config[KeyLB]
	return nil
}

// ownership says whether the pass may touch the instance: it must carry
// this LB's owner key, or carry none and the spec must ask to adopt it.
// It returns nil for an instance that does not exist (the pass creates it).
func ownership(lb *specs.LoadBalancer, obs *Observation) error {
	in := lb.Spec.Instance
	switch {
	case !obs.Exists() || obs.Owner == lb.Metadata.Name:
		return nil
	case obs.Owner != "":
		return fmt.Errorf("instance %s/%s belongs to LoadBalancer %q (its %s key); incuslb leaves it alone: name another instance in spec.instance",
			in.Project, in.Name, obs.Owner, KeyLB)
	case !lb.Spec.Instance.Adopt:
		return fmt.Errorf("instance %s/%s exists and belongs to no LoadBalancer (it has no %s key); incuslb leaves it alone unless spec.instance.adopt is true",
			in.Project, in.Name, KeyLB)
	}
	return nil // unowned, to be adopted
}

// observeFiles reads the config and certificate files of a running
// instance. Files of a stopped instance are never read: Incus serves them
// through a file server that keeps its rootfs busy, and an `incus delete`
// of it then hangs.
func (a *Applier) observeFiles(ctx context.Context, lb *specs.LoadBalancer, obs *Observation, certs []haproxy.CertFile, backend []haproxy.BackendFile) error {
	if !obs.Running() {
		return nil
	}
	var err error
	if obs.File, err = a.readOptional(ctx, lb, haproxy.ConfigPath); err != nil {
		return err
	}
	if err := a.observeBackendFiles(ctx, lb, backend, &obs.Certs.Backend); err != nil {
		return err
	}
	if len(certs) > 0 {
		return a.observeCertFiles(ctx, lb, certs, &obs.Certs)
	}
	return nil
}

// observeHAProxy asks HAProxy what it runs. A master that does not answer
// leaves Answers false and is not an error: the plan starts HAProxy.
// Errors past that point (a worker that does not answer) are errors.
func (a *Applier) observeHAProxy(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, obs *Observation, withCert bool, backend []haproxy.BackendFile) error {
	proc, err := rt.ShowProc(ctx)
	if err != nil {
		obs.Answers = false
		return nil
	}
	obs.Answers, obs.Proc = true, proc
	if len(proc.Workers) == 0 {
		return fmt.Errorf("HAProxy's master answers but has no current worker (show proc)")
	}
	if obs.LoadedHash, err = rt.LoadedHash(ctx); err != nil {
		return fmt.Errorf("reading the loaded config's hash: %w", err)
	}
	if obs.StateText, err = rt.Command(ctx, "show servers state"); err != nil {
		return err
	}
	if obs.Servers, err = haproxy.ParseServersState(obs.StateText); err != nil {
		return err
	}
	if obs.Sessions, err = rt.Sessions(ctx); err != nil {
		return err
	}
	obs.OldSessions = map[int][]haproxy.Session{}
	for _, pid := range proc.OldWorkers {
		if sess, err := rt.OldSessions(ctx, pid); err == nil { // it may just have exited
			obs.OldSessions[pid] = sess
		}
	}
	if obs.LoadedHash == "" {
		return nil
	}
	if err := observeBackendServed(ctx, rt, backend, &obs.Certs.Backend); err != nil {
		return err
	}
	if withCert {
		return observeCertsLoaded(ctx, lb, rt, &obs.Certs)
	}
	return nil
}

func (a *Applier) readOptional(ctx context.Context, lb *specs.LoadBalancer, file string) ([]byte, error) {
	in := lb.Spec.Instance
	data, err := a.Incus.ReadFile(ctx, in.Project, in.Name, file)
	if errors.Is(err, incus.ErrNotFound) {
		return nil, nil
	}
	return data, err
}

// liveSlots arranges the live server table by slot: live[pool][i] is slot
// i of a selector pool.
func liveSlots(servers []haproxy.ServerState, pools map[string]bool) map[string][]haproxy.ServerState {
	live := map[string][]haproxy.ServerState{}
	for _, s := range servers {
		i, ok := haproxy.SlotIndex(s.Name)
		if !pools[s.Backend] || !ok {
			continue
		}
		for len(live[s.Backend]) <= i {
			live[s.Backend] = append(live[s.Backend], haproxy.ServerState{})
		}
		live[s.Backend][i] = s
	}
	return live
}

// parked reports whether a live slot holds no member.
func parked(s haproxy.ServerState) bool { return haproxy.IsParked(s.Address, s.Port) }

// describeLoaded says in a few words what HAProxy runs, for messages.
func (o *Observation) describeLoaded() string {
	switch {
	case !o.Answers:
		return "HAProxy is not running"
	case o.LoadedHash == "":
		return "HAProxy runs a config incuslb did not write"
	}
	return "HAProxy runs config " + o.LoadedHash
}
