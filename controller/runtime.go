package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// drainPoll is how often a draining member's sessions are counted.
const drainPoll = time.Second

// liveLayout reads every slot's live state from HAProxy: live[pool][i] is
// slot i's state, for the selector pools.
func liveLayout(ctx context.Context, rt *haproxy.Runtime, pools map[string]bool) (map[string][]haproxy.ServerState, error) {
	states, err := rt.ServersState(ctx, "")
	if err != nil {
		return nil, err
	}
	live := map[string][]haproxy.ServerState{}
	for _, s := range states {
		if !pools[s.Backend] || !strings.HasPrefix(s.Name, "srv") {
			continue
		}
		var n int
		if _, err := fmt.Sscanf(s.Name, "srv%d", &n); err != nil || n < 1 {
			continue
		}
		for len(live[s.Backend]) < n {
			live[s.Backend] = append(live[s.Backend], haproxy.ServerState{})
		}
		live[s.Backend][n-1] = s
	}
	return live, nil
}

func parked(s haproxy.ServerState) bool {
	return s.Address == "" || (s.Address == "127.0.0.1" && s.Port == 1)
}

// leaver is a member that is in the running config but no longer selected.
type leaver struct {
	pool    string
	slot    int
	member  haproxy.Slot
	running bool // the instance still runs at that address: drain it
}

// leavers finds the members of prev that discovery no longer returns, and
// whether each still runs (so it is drained) or is gone (parked at once).
func (a *Applier) leavers(lb *specs.LoadBalancer, prev haproxy.Layout, disc *discovery) []leaver {
	var out []leaver
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		current := map[string]bool{}
		for _, m := range disc.members[p.Name] {
			current[fmt.Sprintf("%s:%d", m.Address, p.Port)] = true
		}
		for i, s := range prev[p.Name] {
			if s.Parked() || current[s.Endpoint()] {
				continue
			}
			l := leaver{pool: p.Name, slot: i, member: s}
			if inst, ok := disc.seen[p.Project+"/"+s.Member]; ok {
				l.running = inst.Running() && inst.IPv4(p.NIC) == s.Address
			}
			out = append(out, l)
		}
	}
	return out
}

// runtimeChange is one thing done through the runtime API.
type runtimeChange struct {
	kind string // join, leave, drain, ready, park
	desc string
}

// applyRuntime makes the live slots equal to layout through the runtime
// API. draining holds the slots ("pool/index") that must drain rather than
// take traffic.
func (a *Applier) applyRuntime(ctx context.Context, rt *haproxy.Runtime, lb *specs.LoadBalancer, layout haproxy.Layout,
	live map[string][]haproxy.ServerState, draining map[string]bool) ([]runtimeChange, error) {
	var changes []runtimeChange
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		for i, want := range layout[p.Name] {
			var have haproxy.ServerState
			if i < len(live[p.Name]) {
				have = live[p.Name][i]
			}
			slot := haproxy.SlotName(i)
			where := p.Name + "/" + slot
			switch {
			case want.Parked():
				if !parked(have) || have.State() != "MAINT" {
					if err := rt.ParkSlot(ctx, p.Name, slot); err != nil {
						return changes, err
					}
					changes = append(changes, runtimeChange{"park", where + " parked"})
				}
			case draining[fmt.Sprintf("%s/%d", p.Name, i)]:
				if have.State() != "DRAIN" {
					if err := rt.Drain(ctx, p.Name, slot); err != nil {
						return changes, err
					}
					changes = append(changes, runtimeChange{"drain", fmt.Sprintf("%s draining %s (%s)", where, want.Member, want.Endpoint())})
				}
			case have.Address != want.Address || have.Port != want.Port:
				if err := rt.FillSlot(ctx, p.Name, slot, want.Address, want.Port); err != nil {
					return changes, err
				}
				changes = append(changes, runtimeChange{"join", fmt.Sprintf("%s <- %s (%s)", where, want.Member, want.Endpoint())})
			case have.State() == "MAINT" || have.State() == "DRAIN":
				if err := rt.Ready(ctx, p.Name, slot); err != nil {
					return changes, err
				}
				changes = append(changes, runtimeChange{"ready", fmt.Sprintf("%s ready again (%s)", where, want.Member)})
			}
		}
	}
	return changes, nil
}

// settleDrains decides, for each leaver that still runs, whether it keeps
// draining (it stays in the layout, marked in draining) or is done (no
// sessions left, or drainTimeout passed) and may be parked. It returns
// whether any member is still draining.
func (a *Applier) settleDrains(ctx context.Context, rt *haproxy.Runtime, lb *specs.LoadBalancer, leavers []leaver,
	live map[string][]haproxy.ServerState, members map[string][]haproxy.Member, draining map[string]bool) bool {
	now := a.now()
	timeout := lb.Spec.Defaults.DrainTimeout.Duration
	still := false
	for _, l := range leavers {
		key := fmt.Sprintf("%s/%s/%s", lb.Metadata.Name, l.pool, l.member.Endpoint())
		if !l.running {
			a.drainingSince.remove(key)
			continue
		}
		var have haproxy.ServerState
		if l.slot < len(live[l.pool]) {
			have = live[l.pool][l.slot]
		}
		// A restarted controller finds the member in DRAIN and starts the clock again.
		started := a.drainingSince.setIfAbsent(key, now)
		if have.State() == "DRAIN" {
			n, err := rt.Sessions(ctx, l.pool, haproxy.SlotName(l.slot))
			if err == nil && n == 0 || now.Sub(started) >= timeout {
				a.Log.Info("member drained", "lb", lb.Metadata.Name, "pool", l.pool, "member", l.member.Member,
					"sessions", n, "after", now.Sub(started).Truncate(time.Millisecond).String())
				a.drainingSince.remove(key)
				continue
			}
		}
		// Keep it in its slot, draining.
		members[l.pool] = append(members[l.pool], haproxy.Member{Name: l.member.Member, Address: l.member.Address, Port: l.member.Port})
		draining[fmt.Sprintf("%s/%d", l.pool, l.slot)] = true
		still = true
	}
	return still
}

// ensureRunning starts HAProxy in the instance when its master does not
// answer and the unit is not active (someone stopped it).
func (a *Applier) ensureRunning(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, plan *Plan, dryRun bool) error {
	if rt != nil {
		if _, err := rt.ShowProc(ctx); err == nil {
			return nil
		}
	}
	in := lb.Spec.Instance
	// Look at the instance afresh on the next pass too.
	a.checked.remove(in.Project + "/" + in.Name)
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"systemctl", "is-active", "haproxy"}, nil)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(res.Stdout)) == "active" {
		return nil
	}
	plan.StartHAProxy = true
	if dryRun {
		return nil
	}
	a.Log.Info("starting HAProxy: it was not running", "lb", lb.Metadata.Name, "state", strings.TrimSpace(string(res.Stdout)))
	res, err = a.Incus.Exec(ctx, in.Project, in.Name, []string{"systemctl", "start", "haproxy"}, nil)
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("systemctl start haproxy failed (exit %d): %s", res.Code, tail(res.Output(), 5))
	}
	return nil
}
