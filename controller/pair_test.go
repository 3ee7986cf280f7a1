package controller

import (
	"strings"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

func haLB(t *testing.T) *specs.LoadBalancer {
	lb := testLB(t, false)
	lb.Spec.HighAvailability = &specs.HighAvailabilitySpec{Replicas: 2, VirtualIP: "10.0.0.250/24", NIC: "eth0"}
	return lb
}

func TestReplicas(t *testing.T) {
	lb := haLB(t)
	rs := Replicas(lb)
	if len(rs) != 2 || rs[0].Spec.Instance.Name != lb.Spec.Instance.Name+"-1" || rs[1].Spec.Instance.Name != lb.Spec.Instance.Name+"-2" {
		t.Fatalf("replicas: %v, %v", rs[0].Spec.Instance.Name, rs[1].Spec.Instance.Name)
	}
	if rs[0].Metadata.Name != lb.Metadata.Name || lb.Spec.Instance.Name == rs[0].Spec.Instance.Name {
		t.Fatal("a replica keeps the LB's name and leaves the LB's spec alone")
	}
	if got, want := strings.Join(rs[1].InstanceNames(), ","), strings.Join(lb.InstanceNames(), ","); got != want {
		t.Errorf("a replica's copy names the pair's instances %s, want %s", got, want)
	}
	a := &Applier{}
	if got := a.Primary(lb).Spec.Instance.Name; got != rs[0].Spec.Instance.Name {
		t.Errorf("primary with no holder known: %s", got)
	}
	a.holders.set(lb.Metadata.Name, rs[1].Spec.Instance.Name)
	if got := a.Primary(lb).Spec.Instance.Name; got != rs[1].Spec.Instance.Name {
		t.Errorf("primary: %s, want the holder", got)
	}
	single := testLB(t, false)
	if got := Replicas(single); len(got) != 1 || got[0] != single {
		t.Error("without highAvailability the LB is its own one instance")
	}
}

// TestOwnAddressNeverTheVirtualOne: keepalived adds the virtual address
// beside the replica's own, in either order.
func TestOwnAddressNeverTheVirtualOne(t *testing.T) {
	lb := haLB(t)
	for _, addrs := range [][]string{{"10.0.0.250", "10.0.0.5"}, {"10.0.0.5", "10.0.0.250"}} {
		inst := &incus.Instance{Name: "x", Addresses: map[string][]string{"eth0": addrs}}
		if got := ownAddress(lb, inst); got != "10.0.0.5" {
			t.Errorf("%v: own address %q", addrs, got)
		}
		if !holds(inst, "eth0", lb.VirtualAddr()) {
			t.Errorf("%v: holds the virtual address", addrs)
		}
	}
	inst := &incus.Instance{Addresses: map[string][]string{"eth0": {"10.0.0.5"}}}
	if holds(inst, "eth0", lb.VirtualAddr()) || holds(nil, "eth0", lb.VirtualAddr()) {
		t.Error("holds without the address")
	}
}

// TestPinnedReplicaTakesTheFirstReplicasSlots: a replica whose HAProxy
// has the members in other slots (it was recreated, say) is planned onto
// the primary's slots, and drains what the primary drains.
func TestPinnedReplicaTakesTheFirstReplicasSlots(t *testing.T) {
	lb := testLB(t, false)
	api1, api2 := member("api-1", "10.0.0.11"), member("api-2", "10.0.0.12")
	primary := haproxy.Assign(lb, map[string][]haproxy.Member{"api": {{Name: "api-1", Address: "10.0.0.11"}, {Name: "api-2", Address: "10.0.0.12"}}}, nil)
	primary["api"][0], primary["api"][1] = primary["api"][1], primary["api"][0]
	// The other replica runs api-1 in srv1, api-2 in srv2.
	theirs := haproxy.Render(lb, haproxy.Assign(lb, map[string][]haproxy.Member{"api": {{Name: "api-1", Address: "10.0.0.11"}, {Name: "api-2", Address: "10.0.0.12"}}}, nil), haproxy.Options{})
	if primary["api"][0].Member == haproxy.ParseLayout(theirs, nil)["api"][0].Member {
		t.Fatal("test set-up: the layouts should differ")
	}
	obs := running(theirs)
	in := planInput{lb: lb, obs: obs, prev: previousLayout(lb, obs), disc: disc(api1, api2),
		pin: &pinned{layout: primary, draining: map[string]bool{slotKey("api", 1): true}}}
	p := &Plan{}
	plan(in, p)
	if got, want := p.layout["api"][0].Member, primary["api"][0].Member; got != want {
		t.Errorf("srv1 holds %s, want the primary's %s", got, want)
	}
	var ops []string
	for _, op := range p.ops {
		ops = append(ops, op.kind+" "+op.String())
	}
	got := strings.Join(ops, "; ")
	if !strings.Contains(got, "join api/srv1 <- api-2") || !strings.Contains(got, "drain api/srv2") {
		t.Errorf("ops: %s", got)
	}
}

func TestPairPlanMerges(t *testing.T) {
	top := &Plan{Replicas: []*Plan{{RequeueAfter: 0}, {RequeueAfter: 2e9, OldWorkers: map[int]int{7: 3}, Runtime: []string{"x"}}}}
	top.merge()
	if top.RequeueAfter != 2e9 || top.OldWorkers[7] != 3 || len(top.Runtime) != 1 {
		t.Errorf("merged: %+v", top)
	}
	if !top.Changed() {
		t.Error("a replica's runtime change is the pair's")
	}
	top = &Plan{Replicas: []*Plan{{}, {waiting: true}}}
	if !top.Converging() || top.Changed() {
		t.Error("a waiting replica makes the pair converge, and no change")
	}
}

func TestPlace(t *testing.T) {
	on := func(names ...string) []incus.Member {
		var out []incus.Member
		for _, n := range names {
			out = append(out, incus.Member{Name: strings.TrimSuffix(n, "!"), Online: !strings.HasSuffix(n, "!")})
		}
		return out
	}
	for _, c := range []struct {
		name    string
		members []incus.Member
		used    map[string]int
		want    string
	}{
		{"no cluster", nil, nil, ""},
		{"first replica: the first member", on("m1", "m2", "m3"), nil, "m1"},
		{"apart from the other replica", on("m1", "m2", "m3"), map[string]int{"m1": 1}, "m2"},
		{"an offline member is never chosen", on("m1", "m2!", "m3"), map[string]int{"m1": 1}, "m3"},
		{"more replicas than members: the least used", on("m1", "m2"), map[string]int{"m1": 2, "m2": 1}, "m2"},
		{"nothing online", on("m1!", "m2!"), nil, ""},
	} {
		if got := place(c.members, c.used); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
