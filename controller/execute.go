package controller

import (
	"context"
	"fmt"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// execute carries out a plan on a running instance this LB owns: either a
// reload (or start) of HAProxy on the desired config, or the membership and
// certificate changes through the runtime API with the files in the
// container brought up to date, no reload.
func (a *Applier) execute(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, obs *Observation, p *Plan) error {
	log := a.Log.WithValues("lb", lb.Metadata.Name, "instance", p.Instance)
	for _, problem := range p.LabelProblems {
		log.Info("member label ignored", "problem", problem)
	}
	for _, c := range p.cuts {
		// An old worker may have exited meanwhile: not an error.
		if err := rt.ShutdownOldSession(ctx, c.pid, c.id); err != nil {
			log.Info("could not close an old worker's session", "change", c.String(), "err", err.Error())
			continue
		}
		p.Runtime = append(p.Runtime, c.String())
		a.Metrics.runtimeUpdate(lb.Metadata.Name, "cut")
		log.Info("runtime update", "kind", "cut", "change", c.String())
	}
	if p.Reload != ReloadNone {
		if err := a.reload(ctx, lb, rt, obs, p, log); err != nil {
			return err
		}
		a.Metrics.reload(lb.Metadata.Name, string(p.Reload))
		return nil
	}
	in := lb.Spec.Instance
	key := in.Project + "/" + in.Name
	var leaving []string
	for _, op := range p.ops {
		switch {
		case op.kind == "join" && !a.neighboursClean.has(key):
			if a.forgetAndLog(ctx, lb, nil, log) {
				a.neighboursClean.set(key, true)
			}
		case op.kind == "evict":
			leaving = append(leaving, op.from)
		}
	}
	for _, op := range p.ops {
		if err := applyOp(ctx, rt, op); err != nil {
			return fmt.Errorf("runtime API: %s: %w", op, err)
		}
		p.Runtime = append(p.Runtime, op.String())
		a.Metrics.runtimeUpdate(lb.Metadata.Name, op.kind)
		log.Info("runtime update", "kind", op.kind, "change", op.String())
	}
	if len(leaving) > 0 {
		a.forgetAndLog(ctx, lb, leaving, log)
	}
	done, err := applyCerts(ctx, lb, rt, &p.certs)
	if err == nil {
		var more []string
		more, err = applyBackendCerts(ctx, rt, &p.certs)
		done = append(done, more...)
	}
	for _, d := range done {
		p.Runtime = append(p.Runtime, d)
		a.Metrics.runtimeUpdate(lb.Metadata.Name, "certificate")
		log.Info("runtime update", "kind", "certificate", "change", d)
	}
	if err != nil {
		return err
	}
	if err := a.writeCertFiles(ctx, lb, &p.certs); err != nil {
		return err
	}
	if p.writeFile {
		// The files are what a restart of HAProxy loads: the config, and
		// the state of the members still draining.
		text, err := rt.Command(ctx, "show servers state")
		if err != nil {
			return err
		}
		state := haproxy.StateFile(text, p.layout, p.draining)
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ServerStateFile, state, rootFile); err != nil {
			return err
		}
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ConfigPath, p.desired, rootFile); err != nil {
			return err
		}
	}
	return nil
}

var rootFile = incus.FileMode{UID: 0, GID: 0, Mode: 0o644}

func applyOp(ctx context.Context, rt *haproxy.Runtime, op slotOp) error {
	slot := haproxy.SlotName(op.slot)
	switch op.kind {
	case "park":
		return rt.ParkSlot(ctx, op.pool, slot)
	case "drain":
		return rt.Drain(ctx, op.pool, slot)
	case "evict":
		return rt.EvictSlot(ctx, op.pool, slot)
	case "join":
		if op.rested {
			return rt.FillRested(ctx, op.pool, slot, op.member.Address, op.member.Port, op.gated)
		}
		return rt.FillSlot(ctx, op.pool, slot, op.member.Address, op.member.Port, op.gated)
	case "ready":
		return rt.Ready(ctx, op.pool, slot, op.gated)
	case "weight":
		return rt.SetWeight(ctx, op.pool, slot, op.weight)
	}
	return fmt.Errorf("unknown slot operation %q", op.kind)
}
