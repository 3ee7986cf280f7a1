package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// pinned is what the first replica's pass of a pair decided and the
// others follow: which member sits in which slot, and which slots drain.
// Every replica then sends a client's sticky cookie to the same member.
type pinned struct {
	layout   haproxy.Layout
	draining map[string]bool
}

// Replica returns the spec of replica i (1-based) of an HA LoadBalancer:
// the same spec with the replica's instance name. Everything keyed by the
// LB's name (the owner key, the cookie keys) stays the LB's.
func Replica(lb *specs.LoadBalancer, i int) *specs.LoadBalancer {
	r := *lb
	r.ReplicaOf = lb.Spec.Instance.Name
	r.Spec.Instance.Name = specs.ReplicaName(lb.Spec.Instance.Name, i)
	return &r
}

// Replicas returns the specs of every instance that runs lb: lb itself
// without highAvailability.
func Replicas(lb *specs.LoadBalancer) []*specs.LoadBalancer {
	ha := lb.Spec.HighAvailability
	if ha == nil {
		return []*specs.LoadBalancer{lb}
	}
	out := make([]*specs.LoadBalancer, ha.Replicas)
	for i := range out {
		out[i] = Replica(lb, i+1)
	}
	return out
}

// Primary is the replica whose HAProxy serves clients: the holder of the
// virtual address at the last pass, else replica 1 (either only when its
// member is not lost); lb itself without highAvailability.
func (a *Applier) Primary(lb *specs.LoadBalancer) *specs.LoadBalancer {
	rs := Replicas(lb)
	if holder, ok := a.holders.get(lb.Metadata.Name); ok {
		for _, r := range rs {
			if r.Spec.Instance.Name == holder && !a.replicaLost(r) {
				return r
			}
		}
	}
	// A replica on a lost member would fail its pass: the first of the
	// others decides the slots.
	for _, r := range rs {
		if !a.replicaLost(r) {
			return r
		}
	}
	return rs[0]
}

func (a *Applier) replicaLost(r *specs.LoadBalancer) bool {
	_, lost := a.onLostMember(r.Spec.Instance.Project, r.Spec.Instance.Name)
	return lost
}

// applyPair makes the pass of every replica of an HA LoadBalancer, the
// primary first: its pass decides the slots (from what its HAProxy runs,
// which is what clients' cookies point at), and the other replicas take
// the same. Then it makes keepalived's config on each replica agree (see
// ensureVRRP). A replica whose pass fails does not stop the others: the
// pair serves as long as one replica does.
func (a *Applier) applyPair(ctx context.Context, lb *specs.LoadBalancer, dryRun bool) (*Plan, error) {
	in := lb.Spec.Instance
	top := &Plan{LB: lb.Metadata.Name, Instance: in.Project + "/" + strings.Join(lb.InstanceNames(), ","),
		VirtualIP: lb.Spec.HighAvailability.VirtualIP}
	primary := a.Primary(lb)
	order := []*specs.LoadBalancer{primary}
	for _, r := range Replicas(lb) {
		if r != primary && r.Spec.Instance.Name != primary.Spec.Instance.Name {
			order = append(order, r)
		}
	}
	var pin *pinned
	var errs []error
	for _, r := range order {
		p, err := a.applyOne(ctx, r, dryRun, pin)
		top.Replicas = append(top.Replicas, p)
		if err != nil {
			errs = append(errs, fmt.Errorf("replica %s: %w", r.Spec.Instance.Name, err))
			continue
		}
		if pin == nil && p.layout != nil {
			pin = &pinned{layout: p.layout, draining: p.draining}
		}
	}
	top.merge()
	if !dryRun {
		if err := a.ensureVRRP(ctx, lb, top); err != nil {
			errs = append(errs, err)
		}
	}
	return top, errors.Join(errs...)
}

// merge fills a pair's plan from its replicas' plans.
func (p *Plan) merge() {
	p.OldWorkers = map[int]int{}
	for _, r := range p.Replicas {
		if r.RequeueAfter > 0 && (p.RequeueAfter == 0 || r.RequeueAfter < p.RequeueAfter) {
			p.RequeueAfter = r.RequeueAfter
		}
		for pid, n := range r.OldWorkers {
			p.OldWorkers[pid] += n
		}
		if r.Reload != ReloadNone && p.Reload == ReloadNone {
			p.Reload, p.ReloadDetail = r.Reload, r.ReloadDetail
		}
		p.Runtime = append(p.Runtime, r.Runtime...)
	}
}

// pairPeers lists the replicas of a pair with their own addresses, for
// the peers section their rate limits' tables are shared through: this
// replica's from its observed instance, another's from its last pass here,
// else from the config this replica runs (so that a replica that is down
// or not read yet does not make the other reload). nil for a single LB.
func (a *Applier) pairPeers(lb *specs.LoadBalancer, obs *Observation) []haproxy.Peer {
	ha := lb.Spec.HighAvailability
	if ha == nil || lb.ReplicaOf == "" {
		return nil
	}
	key := func(name string) string { return lb.Spec.Instance.Project + "/" + name }
	if obs.Instance != nil {
		if addr := ownAddress(lb, obs.Instance); addr != "" {
			a.peerAddrs.set(key(lb.Spec.Instance.Name), addr)
		}
	}
	running := haproxy.ParsePeers(obs.File)
	peers := make([]haproxy.Peer, ha.Replicas)
	for i := range peers {
		name := specs.ReplicaName(lb.ReplicaOf, i+1)
		addr, ok := a.peerAddrs.get(key(name))
		if !ok {
			addr = running[name]
		}
		peers[i] = haproxy.Peer{Name: name, Address: addr}
	}
	return peers
}

// ownAddress is the instance's own IPv4 address on the default NIC: never
// the virtual address of its pair, which keepalived adds beside it.
func ownAddress(lb *specs.LoadBalancer, inst *incus.Instance) string {
	vip := lb.VirtualAddr()
	for _, a := range inst.Addresses[specs.DefaultNIC] {
		if addr, err := netip.ParseAddr(a); err == nil && addr != vip {
			return a
		}
	}
	return ""
}

// holds reports whether inst carries the virtual address on nic.
func holds(inst *incus.Instance, nic string, vip netip.Addr) bool {
	if inst == nil || !vip.IsValid() {
		return false
	}
	return slices.Contains(inst.Addresses[nic], vip.String())
}

// vrrpSettle is how long after a pass that changed keepalived's config the
// holder is looked at again.
const vrrpSettle = time.Second

// place picks the cluster member for a new replica: an online member that
// runs no other replica of the pair, the first by name; when every online
// member runs one already, the online member with the fewest. "" without
// a cluster (or with no member online: Incus then refuses or chooses).
func place(members []incus.Member, used map[string]int) string {
	best, bestN := "", -1
	for _, m := range members {
		if !m.Online {
			continue
		}
		if n := used[m.Name]; bestN < 0 || n < bestN {
			best, bestN = m.Name, n
		}
	}
	return best
}

// target is where a new instance of lb goes: for a replica of a pair on a
// cluster, a member apart from the other replicas (see place); else "",
// Incus's choice.
func (a *Applier) target(ctx context.Context, lb *specs.LoadBalancer) (string, error) {
	if lb.Spec.HighAvailability == nil {
		return "", nil
	}
	members, err := a.Incus.ClusterMembers(ctx)
	if err != nil || len(members) == 0 {
		return "", err
	}
	used := map[string]int{}
	in := lb.Spec.Instance
	for _, name := range lb.InstanceNames() {
		if name == in.Name {
			continue
		}
		if inst, err := a.Incus.GetInstance(ctx, in.Project, name, false); err == nil {
			used[inst.Location]++
		}
	}
	return place(members, used), nil
}
