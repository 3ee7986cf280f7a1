package controller

import (
	"fmt"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// slotOp is one change of a slot through the runtime API.
type slotOp struct {
	kind   string // join, drain, ready, evict, park, weight
	pool   string
	slot   int
	member haproxy.Slot
	// gated: the member takes no request before it passed its health
	// checks (join: checked, and the slot is in maintenance or rested).
	gated bool
	// rested: a join into a rested slot (see haproxy.Runtime.ParkSlot).
	rested bool
	window time.Duration // evict: how long until the slot is parked
	from   string        // evict: the address the slot leaves
	weight int           // weight: the slot's new weight
}

func (o slotOp) String() string {
	where := o.pool + "/" + haproxy.SlotName(o.slot)
	switch o.kind {
	case "evict":
		return fmt.Sprintf("%s evicted (drained, at the parked address; parked in %v)", where, o.window)
	case "join":
		return fmt.Sprintf("%s <- %s (%s)", where, o.member.Member, o.member.Endpoint())
	case "drain":
		return fmt.Sprintf("%s draining %s (%s)", where, o.member.Member, o.member.Endpoint())
	case "ready":
		return fmt.Sprintf("%s ready again (%s)", where, o.member.Member)
	case "weight":
		return fmt.Sprintf("%s weight %d (%s)", where, o.weight, o.member.Member)
	}
	return where + " parked"
}

// slotOps lists the runtime changes that make the live slots equal to
// layout. draining holds the slots ("pool/index") that must drain rather
// than take traffic.
func slotOps(lb *specs.LoadBalancer, live map[string][]haproxy.ServerState, layout haproxy.Layout, draining map[string]bool, ev *evictions) []slotOp {
	var ops []slotOp
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		for i, want := range layout[p.Name] {
			var have haproxy.ServerState
			if i < len(live[p.Name]) {
				have = live[p.Name][i]
			}
			op := slotOp{pool: p.Name, slot: i, member: want}
			checked := p.Join != specs.JoinImmediate
			switch {
			case want.Parked():
				switch {
				case !parked(have):
					op.kind, op.from, op.window = "evict", have.Address, ev.window // see evictions
					ev.started(p.Name, i)
				case !have.Rested() && !ev.pending(p.Name, i):
					op.kind = "park"
				}
			case draining[slotKey(p.Name, i)]:
				if have.State() != "DRAIN" {
					op.kind = "drain"
				}
			case have.Address != want.Address || have.Port != want.Port:
				op.kind, op.gated, op.rested = "join", checked, have.Rested()
			case have.State() == "MAINT" || have.State() == "DRAIN":
				op.kind, op.gated = "ready", checked && have.State() == "MAINT"
			}
			if op.kind != "" {
				ops = append(ops, op)
			}
		}
	}
	return ops
}

// coldSlots are the slots a joining member should take only when no other
// is free (see haproxy.AssignWarm): every slot but those parked, at rest
// (health 0) and unchanged for longer than the pool's check interval.
func coldSlots(lb *specs.LoadBalancer, obs *Observation) map[string]map[int]bool {
	if !obs.Answers || obs.LoadedHash == "" {
		return nil
	}
	cold := map[string]map[int]bool{}
	live := liveSlots(obs.Servers, haproxy.SelectorPools(lb))
	for _, p := range lb.Spec.Pools {
		cold[p.Name] = map[int]bool{}
		for i, s := range live[p.Name] {
			// A slot that rested for less than an interval may still wait
			// for the next check its member was due.
			if !s.Rested() || s.Since <= p.HealthCheck.Interval.Duration {
				cold[p.Name][i] = true
			}
		}
	}
	return cold
}

// evictions times the evicted slots. A slot whose member leaves (drained,
// or gone without a drain: a hard kill, a stop under `incuslb apply`,
// another address) is first evicted:
// drained (no new request) and pointed at the parked address, which cuts
// nothing, so that a request still connecting to the dead member fails its
// connect and is redispatched (option redispatch) instead of being cut with
// no answer. Once timeouts.connect has passed, the slot is parked, which
// cuts what is left: requests already sent to the member, and sessions
// (WebSockets) a dead member can no longer serve. The times live in
// Plan.drains between passes; a controller that restarts parks at once.
type evictions struct {
	now    time.Time
	window time.Duration
	since  map[string]time.Time // from the last pass, by evictKey
	keep   map[string]time.Time // for the next pass
	next   time.Duration        // the soonest an eviction under way ends
}

func evictKey(pool string, i int) string { return "evict/" + slotKey(pool, i) }

// started records that slot i of pool is evicted now.
func (e *evictions) started(pool string, i int) {
	e.keep[evictKey(pool, i)] = e.now
	e.wait(e.window)
}

// pending reports whether slot i of pool is within its eviction window.
func (e *evictions) pending(pool string, i int) bool {
	at, ok := e.since[evictKey(pool, i)]
	if !ok || e.now.Sub(at) >= e.window {
		return false
	}
	e.keep[evictKey(pool, i)] = at
	e.wait(e.window - e.now.Sub(at))
	return true
}

func (e *evictions) wait(d time.Duration) {
	if e.next == 0 || d < e.next {
		e.next = d
	}
}

func slotKey(pool string, i int) string { return fmt.Sprintf("%s/%d", pool, i) }

// drainKey names a draining member for the drain clock.
func drainKey(lb, pool string, s haproxy.Slot) string {
	return lb + "/" + pool + "/" + s.Endpoint()
}

// settleDrains decides, for each member that left its pool while it still
// runs, whether it keeps draining (it stays in its slot, in p.draining) or
// is done: no sessions left, or drainTimeout passed. Members that are gone
// (stopped, deleted, another address) are parked at once.
func settleDrains(in planInput, members map[string][]haproxy.Member, p *Plan) {
	timeout := in.lb.Spec.Defaults.DrainTimeout.Duration
	for _, l := range leavers(in.lb, in.prev, in.disc) {
		if !l.running {
			continue
		}
		key := drainKey(in.lb.Metadata.Name, l.pool, l.member)
		started, ok := in.drains[key]
		if !ok {
			started = in.now // a restarted controller starts the clock again
		}
		var have haproxy.ServerState
		live := liveSlots(in.obs.Servers, map[string]bool{l.pool: true})[l.pool]
		if l.slot < len(live) {
			have = live[l.slot]
		}
		if have.State() == "DRAIN" {
			n, known := in.obs.Sessions[l.pool+"/"+haproxy.SlotName(l.slot)]
			if (known && n == 0) || in.now.Sub(started) >= timeout {
				continue // drained: its slot is parked
			}
		}
		p.drains[key] = started
		members[l.pool] = append(members[l.pool], haproxy.Member{Name: l.member.Member, Address: l.member.Address, Port: l.member.Port})
		p.draining[slotKey(l.pool, l.slot)] = true
		p.drainsLeft = true
	}
}

// leaver is a member of the previous layout that discovery no longer
// returns.
type leaver struct {
	pool    string
	slot    int
	member  haproxy.Slot
	running bool // the instance still runs at that address: drain it
}

func leavers(lb *specs.LoadBalancer, prev haproxy.Layout, disc *discovery) []leaver {
	var out []leaver
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		current := map[string]bool{}
		for _, m := range disc.members[p.Name] {
			port := m.Port
			if port == 0 {
				port = p.Port
			}
			current[haproxy.Slot{Address: m.Address, Port: port}.Endpoint()] = true
		}
		for i, s := range prev[p.Name] {
			if s.Parked() || current[s.Endpoint()] {
				continue
			}
			l := leaver{pool: p.Name, slot: i, member: s}
			if inst, ok := disc.seen[p.Project+"/"+s.Member]; ok {
				// A clean stop drains too: requests already sent finish
				// while its service shuts down gracefully.
				l.running = (inst.Running() || inst.Status == statusStopping) && memberAddress(&inst, &p) == s.Address
			}
			out = append(out, l)
		}
	}
	return out
}

// previousLayout is where members sit now: the live server table when
// HAProxy runs a config incuslb wrote (it is the truth; the file is a
// cache), with member names from the file where the endpoints agree;
// otherwise the file.
func previousLayout(lb *specs.LoadBalancer, obs *Observation) haproxy.Layout {
	pools := haproxy.SelectorPools(lb)
	prev := previousSlots(obs, pools)
	return prev
}

// trimForeign bounds what was read back from the container: incuslb grows
// a pool by whole steps of its slot count, so a pool of another length was
// edited by hand ("server srv4000 ..."). Such a pool keeps only the slots up
// to its last current member, in whole steps. (The slot codec already
// ignores indices over haproxy.MaxSlots.)
func trimForeign(lb *specs.LoadBalancer, prev haproxy.Layout, members map[string][]haproxy.Member) haproxy.Layout {
	out := haproxy.Layout{}
	for _, p := range lb.Spec.Pools {
		slots, step := prev[p.Name], max(p.Slots, 1)
		if len(slots)%step == 0 {
			if slots != nil {
				out[p.Name] = slots
			}
			continue
		}
		current := map[string]bool{}
		for _, m := range members[p.Name] {
			port := m.Port
			if port == 0 {
				port = p.Port
			}
			current[haproxy.Slot{Address: m.Address, Port: port}.Endpoint()] = true
		}
		used := 0
		for i, s := range slots {
			if !s.Parked() && current[s.Endpoint()] {
				used = i + 1
			}
		}
		out[p.Name] = slots[:(used+step-1)/step*step]
	}
	return out
}

func previousSlots(obs *Observation, pools map[string]bool) haproxy.Layout {
	file := haproxy.ParseLayout(obs.File, pools)
	if !obs.Answers || obs.LoadedHash == "" {
		return file
	}
	out := haproxy.Layout{}
	for pool, live := range liveSlots(obs.Servers, pools) {
		slots := make([]haproxy.Slot, len(live))
		for i, s := range live {
			if parked(s) {
				continue
			}
			slots[i] = haproxy.Slot{Address: s.Address, Port: s.Port}
			if i < len(file[pool]) && file[pool][i].Endpoint() == slots[i].Endpoint() {
				slots[i].Member = file[pool][i].Member
			}
		}
		out[pool] = slots
	}
	return out
}
