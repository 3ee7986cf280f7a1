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
	if err := applyOps(ctx, rt, p.ops, func(op slotOp) {
		p.Runtime = append(p.Runtime, op.String())
		a.Metrics.runtimeUpdate(lb.Metadata.Name, op.kind)
		log.Info("runtime update", "kind", op.kind, "change", op.String())
	}); err != nil {
		return err
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

// applyOps carries out ops in order, calling done after each; a run of
// weight changes goes in one exchange (haproxy.Runtime.SetWeights).
func applyOps(ctx context.Context, rt *haproxy.Runtime, ops []slotOp, done func(slotOp)) error {
	for i := 0; i < len(ops); {
		j := i + 1
		if ops[i].kind == "weight" {
			for j < len(ops) && ops[j].kind == "weight" {
				j++
			}
			ws := make([]haproxy.Weight, 0, j-i)
			for _, op := range ops[i:j] {
				ws = append(ws, haproxy.Weight{Backend: op.pool, Slot: haproxy.SlotName(op.slot), Weight: op.weight})
			}
			if err := rt.SetWeights(ctx, ws); err != nil {
				return fmt.Errorf("runtime API: the weights of %d slot(s): %w", j-i, err)
			}
		} else if err := applyOp(ctx, rt, ops[i]); err != nil {
			return fmt.Errorf("runtime API: %s: %w", ops[i], err)
		}
		for _, op := range ops[i:j] {
			done(op)
		}
		i = j
	}
	return nil
}

// applyOp carries out one slot operation other than a weight change.
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
	}
	return fmt.Errorf("unknown slot operation %q", op.kind)
}
