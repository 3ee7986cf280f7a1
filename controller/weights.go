package controller

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// Weights: a member's share of its pool's new sessions is its weight
// label (specs.WeightKey, specs.DefaultWeight without one), and a pool
// with a canary splits its sessions between the canary's members and the
// others by percent first. Weights are set through the runtime API only:
// they are not in haproxy.cfg (a slot weighs 1 there, HAProxy's default),
// so changing one never reloads, and the server-state file carries them
// over a reload. Weights are divided by their greatest common divisor, so
// a pool whose members all weigh the same runs at 1, as rendered.

// memberLabels is what discovery read of a member's labels.
type memberLabels struct {
	weight int  // its weight label, or specs.DefaultWeight
	canary bool // picked by its pool's canary selector
}

// weightLabel reads a member's weight label. A value that is not an
// integer from 0 to specs.MaxWeight leaves the default weight, and the
// problem is returned for the log and the status.
func weightLabel(inst incus.Instance) (int, string) {
	v, ok := inst.Config[specs.WeightKey]
	if !ok {
		return specs.DefaultWeight, ""
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > specs.MaxWeight {
		if len(v) > 32 {
			v = v[:32] + "…"
		}
		return specs.DefaultWeight, fmt.Sprintf("instance %s/%s: %s=%q must be an integer from 0 to %d; it weighs %d",
			inst.Project, inst.Name, specs.WeightKey, v, specs.MaxWeight, specs.DefaultWeight)
	}
	return n, ""
}

// selects reports whether a pool (or its canary) picks an instance, and
// whether as a canary.
func selects(p *specs.Pool, config map[string]string) (picked, canary bool) {
	if p.Canary != nil && matches(config, p.Canary.Selector) {
		return true, true
	}
	return matches(config, p.Selector), false
}

// desiredWeights is the runtime weight of each member of each selector
// pool, by pool and member name.
func desiredWeights(lb *specs.LoadBalancer, disc *discovery) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		labels := disc.labels[p.Name]
		pct := -1
		if p.Canary != nil {
			pct = p.Canary.Percent
		}
		out[p.Name] = poolWeights(labels, pct)
	}
	return out
}

// poolWeights computes the weights of one pool's members from their
// labels; percent is the canary's share, or -1 for a pool without one.
func poolWeights(labels map[string]memberLabels, percent int) map[string]int {
	var sum [2]int // stable, canary
	for _, l := range labels {
		sum[b2i(l.canary)] += l.weight
	}
	out := make(map[string]int, len(labels))
	if percent < 0 || sum[0] == 0 || sum[1] == 0 {
		// No split: one group is empty (or weighs nothing), and the other
		// takes every session, by its labels.
		for name, l := range labels {
			out[name] = l.weight
		}
		return reduce(out)
	}
	// Exact first: each group's weights times its share and the other
	// group's sum. Scaled down to MaxWeight only when they do not fit.
	share := [2]int{100 - percent, percent}
	top := 0
	for name, l := range labels {
		g := b2i(l.canary)
		out[name] = l.weight * share[g] * sum[1-g]
	}
	out = reduce(out)
	for _, w := range out {
		top = max(top, w)
	}
	if top <= specs.MaxWeight {
		return out
	}
	for name, w := range out {
		scaled := int(math.Round(float64(w) * specs.MaxWeight / float64(top)))
		if scaled == 0 && w > 0 {
			scaled = 1 // a member with a share keeps one, however small
		}
		out[name] = scaled
	}
	return reduce(out)
}

// reduce divides weights by their greatest common divisor.
func reduce(w map[string]int) map[string]int {
	g := 0
	for _, n := range w {
		g = gcd(g, n)
	}
	if g > 1 {
		for k, n := range w {
			w[k] = n / g
		}
	}
	return w
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// liveWeight is a slot's weight in HAProxy: as read, or 1 (the config's)
// when the answer did not say.
func liveWeight(s haproxy.ServerState) int {
	if s.HasWeight {
		return s.Weight
	}
	return 1
}

// weightOps lists the weight changes that make the live weights of the
// filled slots of layout those of weights. A draining slot keeps its
// weight (it takes no new session anyway).
func weightOps(lb *specs.LoadBalancer, live map[string][]haproxy.ServerState, layout haproxy.Layout, weights map[string]map[string]int, draining map[string]bool) []slotOp {
	var ops []slotOp
	for _, p := range lb.Spec.Pools {
		for i, s := range layout[p.Name] {
			want, ok := weights[p.Name][s.Member]
			if s.Parked() || !ok || draining[slotKey(p.Name, i)] {
				continue
			}
			have := 1
			if i < len(live[p.Name]) {
				have = liveWeight(live[p.Name][i])
			}
			if have != want {
				ops = append(ops, slotOp{kind: "weight", pool: p.Name, slot: i, member: s, weight: want})
			}
		}
	}
	return ops
}

// weighted reports whether weights or the live table hold a weight other
// than 1: only then must a reload's new worker be looked at for them.
func weighted(weights map[string]map[string]int, servers []haproxy.ServerState) bool {
	for _, pool := range weights {
		for _, w := range pool {
			if w != 1 {
				return true
			}
		}
	}
	return slices.ContainsFunc(servers, func(s haproxy.ServerState) bool { return liveWeight(s) != 1 })
}

// applyWeightsAfterReload sets the weights of the new worker's slots
// where they differ from the plan's: the server-state file carries a slot's
// weight over only when it keeps its member (see haproxy.StateFile).
func applyWeightsAfterReload(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, p *Plan) ([]slotOp, error) {
	servers, err := rt.ServersState(ctx, "")
	if err != nil {
		return nil, err
	}
	ops := weightOps(lb, liveSlots(servers, haproxy.SelectorPools(lb)), p.layout, p.weights, p.draining)
	var done []slotOp
	err = applyOps(ctx, rt, ops, func(op slotOp) { done = append(done, op) })
	return done, err
}
