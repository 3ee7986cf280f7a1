package controller

import (
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

func dualMember(name, v4, v6 string) incus.Instance {
	m := member(name, v4)
	if v4 == "" {
		m.Addresses = map[string][]string{}
	}
	m.Addresses6 = map[string][]string{"eth0": {v6}}
	return m
}

func TestMemberAddressByFamily(t *testing.T) {
	both := dualMember("a", "10.0.0.11", "fd42:77::11")
	v6only := dualMember("b", "", "fd42:77::12")
	v4only := member("c", "10.0.0.13")
	for _, c := range []struct {
		family string
		inst   incus.Instance
		want   string
	}{
		{specs.FamilyIPv4, both, "10.0.0.11"},
		{specs.FamilyIPv6, both, "fd42:77::11"},
		{specs.FamilyAny, both, "10.0.0.11"},
		{specs.FamilyIPv4, v6only, ""},
		{specs.FamilyIPv6, v6only, "fd42:77::12"},
		{specs.FamilyAny, v6only, "fd42:77::12"},
		{specs.FamilyIPv6, v4only, ""},
		{specs.FamilyAny, v4only, "10.0.0.13"},
		{"", both, "10.0.0.11"}, // as before family existed
	} {
		p := &specs.Pool{NIC: "eth0", Family: c.family}
		if got := memberAddress(&c.inst, p); got != c.want {
			t.Errorf("%s of %s: %q, want %q", c.family, c.inst.Name, got, c.want)
		}
	}
}

// A pool with family: ipv6 puts its members' IPv6 addresses into slots
// through the runtime API, keeps them there on later passes (which take a
// member's address from the running config), and evicts a leaver.
func TestIPv6MembersJoinAndLeaveThroughTheRuntimeAPI(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{dualMember("api-1", "10.0.0.11", "fd42:77::11")}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	lb.Spec.Pools[0].Family = specs.FamilyIPv6
	apply(t, a, lb)
	if cfg := string(f.files[haproxy.ConfigPath]); !strings.Contains(cfg, "server srv1 [fd42:77::11]:8080 check # api-1") {
		t.Fatalf("config:\n%s", cfg)
	}
	reloads := f.hap.reloads
	f.members = append(f.members, dualMember("api-2", "10.0.0.12", "fd42:77::12"))
	plan := apply(t, a, lb)
	if plan.Reload != "" || f.hap.reloads != reloads {
		t.Fatalf("a join reloaded: %q", plan.Reload)
	}
	if len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv2 <- api-2 ([fd42:77::12]:8080)") {
		t.Fatalf("runtime changes: %v", plan.Runtime)
	}
	if !strings.Contains(strings.Join(f.ran, "\n"), "set server api/srv2 addr fd42:77::12 port 8080") {
		t.Fatalf("commands:\n%s", strings.Join(f.ran, "\n"))
	}
	for i := 0; i < 2; i++ {
		if plan = apply(t, a, lb); len(plan.Runtime) != 0 || plan.Reload != "" {
			t.Fatalf("pass %d after the join changed something: %+v", i, plan)
		}
	}
	// A leaver (stopped) is evicted, with no reload.
	f.members[0].Status = "Stopped"
	if plan = apply(t, a, lb); plan.Reload != "" || len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv1 evicted") {
		t.Fatalf("leave: %+v", plan)
	}
}

// Forgetting neighbour entries concerns IPv4 alone: IPv6 addresses are
// dropped, and with none left nothing runs in the container.
func TestForgetNeighboursSkipsIPv6(t *testing.T) {
	f := newFake()
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	n, err := a.forgetNeighbours(t.Context(), lb, []string{"fd42:77::11", "2001:db8::1"})
	if n != 0 || err != nil || len(f.ran) != 0 {
		t.Fatalf("n %d, err %v, ran %v", n, err, f.ran)
	}
	if _, err := a.forgetNeighbours(t.Context(), lb, []string{"fd42:77::11", "10.0.0.11"}); err != nil {
		t.Fatal(err)
	}
	if len(f.ran) != 1 || f.ran[0] != "forget neighbours 10.0.0.11" {
		t.Fatalf("ran %q", f.ran)
	}
}

// One member in two pools of different families: each slot holds the
// address of its pool's family, and later passes (addresses from the
// running config) keep both.
func TestOneMemberInAnIPv4AndAnIPv6Pool(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{dualMember("api-1", "10.0.0.11", "fd42:77::11")}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	v6 := lb.Spec.Pools[0]
	v6.Name, v6.Family = "api6", specs.FamilyIPv6
	lb.Spec.Pools = append(lb.Spec.Pools, v6)
	lb.Spec.Routes = append([]specs.Route{{PathPrefix: "/v6/", Pool: "api6"}}, lb.Spec.Routes...)
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Fatal(errs)
	}
	apply(t, a, lb)
	cfg := string(f.files[haproxy.ConfigPath])
	for _, want := range []string{"server srv1 10.0.0.11:8080 check # api-1", "server srv1 [fd42:77::11]:8080 check # api-1"} {
		if !strings.Contains(cfg, want) {
			t.Fatalf("config lacks %q:\n%s", want, cfg)
		}
	}
	for i := 0; i < 2; i++ {
		if plan := apply(t, a, lb); len(plan.Runtime) != 0 || plan.Reload != "" {
			t.Fatalf("pass %d changed something: %+v", i, plan)
		}
	}
}
