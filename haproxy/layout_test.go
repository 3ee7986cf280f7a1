package haproxy_test

import (
	"fmt"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

func poolLB(slots int) *specs.LoadBalancer {
	lb := &specs.LoadBalancer{
		APIVersion: specs.APIVersion, Kind: specs.Kind,
		Metadata: specs.ObjectMeta{Name: "t"},
		Spec: specs.LoadBalancerSpec{
			Routes: []specs.Route{{Pool: "api"}},
			Pools:  []specs.Pool{{Name: "api", Selector: map[string]string{"user.role": "api"}, Port: 8080, Slots: slots}},
		},
	}
	specs.SetDefaults(lb)
	return lb
}

func members(names ...string) map[string][]haproxy.Member {
	var ms []haproxy.Member
	for _, n := range names {
		ms = append(ms, haproxy.Member{Name: n, Address: fmt.Sprintf("10.0.0.%d", 10+int(n[len(n)-1]-'0'))})
	}
	return map[string][]haproxy.Member{"api": ms}
}

func slotOf(l haproxy.Layout, member string) int {
	for i, s := range l["api"] {
		if s.Member == member {
			return i
		}
	}
	return -1
}

func TestAssignKeepsMembersInTheirSlots(t *testing.T) {
	lb := poolLB(4)
	first := haproxy.Assign(lb, members("api-3", "api-5"), nil)
	if slotOf(first, "api-3") != 0 || slotOf(first, "api-5") != 1 {
		t.Fatalf("first assignment is not in name order: %v", first)
	}
	// api-1 sorts first but joins later: it must not move the others.
	second := haproxy.Assign(lb, members("api-1", "api-3", "api-5"), first)
	if slotOf(second, "api-3") != 0 || slotOf(second, "api-5") != 1 || slotOf(second, "api-1") != 2 {
		t.Fatalf("a joining member moved existing ones: %v", second)
	}
	// api-3 leaves: its slot is parked, the others stay.
	third := haproxy.Assign(lb, members("api-1", "api-5"), second)
	if !third["api"][0].Parked() || slotOf(third, "api-5") != 1 || slotOf(third, "api-1") != 2 {
		t.Fatalf("a leaving member moved others: %v", third)
	}
	// a newcomer takes the lowest free slot.
	fourth := haproxy.Assign(lb, members("api-1", "api-5", "api-7"), third)
	if slotOf(fourth, "api-7") != 0 {
		t.Fatalf("a newcomer did not take the lowest free slot: %v", fourth)
	}
}

func TestAssignMovesAMemberWhoseAddressChanged(t *testing.T) {
	lb := poolLB(4)
	first := haproxy.Assign(lb, members("api-1", "api-2"), nil)
	moved := map[string][]haproxy.Member{"api": {
		{Name: "api-1", Address: "10.0.0.99"},
		{Name: "api-2", Address: first["api"][1].Address},
	}}
	second := haproxy.Assign(lb, moved, first)
	if slotOf(second, "api-2") != 1 {
		t.Fatalf("api-2 moved: %v", second)
	}
	if got := second["api"][slotOf(second, "api-1")].Address; got != "10.0.0.99" {
		t.Fatalf("api-1 has address %s, want the new one", got)
	}
}

func TestAssignGrowsInWholeStepsAndNeverShrinks(t *testing.T) {
	lb := poolLB(2)
	grown := haproxy.Assign(lb, members("a-1", "a-2", "a-3"), nil)
	if n := len(grown["api"]); n != 4 {
		t.Fatalf("3 members in a pool of 2 slots got %d slots, want 4", n)
	}
	shrunk := haproxy.Assign(lb, members("a-1"), grown)
	if n := len(shrunk["api"]); n != 4 {
		t.Fatalf("slots shrank to %d; they must stay at 4 so membership changes never reload", n)
	}
}

func TestParseLayoutReadsBackWhatRenderWrote(t *testing.T) {
	lb := poolLB(3)
	want := haproxy.Assign(lb, members("api-1", "api-2"), nil)
	want = haproxy.Assign(lb, members("api-2"), want) // slot 1 parked, slot 2 filled
	cfg := haproxy.Render(lb, want, haproxy.Options{})
	got := haproxy.ParseLayout(cfg, map[string]bool{"api": true})
	if got.String() != want.String() {
		t.Fatalf("ParseLayout(Render(l)) != l:\n got %s\nwant %s", got, want)
	}
}

func TestCheckMemberRejectsWhatCouldInjectConfig(t *testing.T) {
	for _, addr := range []string{"", "10.0.0.1 check", "10.0.0.1\nbackend x", "fe80::1%eth0", "[::1]", "::ffff:10.0.0.1", "::1 check", "host.example", "10.0.0.1#"} {
		if err := haproxy.CheckMember(haproxy.Member{Name: "m", Address: addr}); err == nil {
			t.Errorf("CheckMember accepted address %q", addr)
		}
	}
	for _, addr := range []string{"10.0.0.1", "fd42:77::216:3eff:fe00:1", "2001:db8::1"} {
		if err := haproxy.CheckMember(haproxy.Member{Name: "m", Address: addr, Port: 80}); err != nil {
			t.Errorf("CheckMember rejected a good member: %v", err)
		}
	}
}

func TestAssignWarmPrefersSlotsThatRested(t *testing.T) {
	lb := poolLB(4)
	prev := haproxy.Assign(lb, members("api-1", "api-2", "api-3"), nil) // srv1..srv3
	after := haproxy.Assign(lb, members("api-3"), prev)                 // srv1, srv2 parked just now
	for _, c := range []struct {
		name   string
		cold   map[string]map[int]bool
		joiner []string
		want   []int
	}{
		{"nothing cold: lowest free", nil, []string{"api-4"}, []int{0}},
		{"just parked slots last", map[string]map[int]bool{"api": {0: true, 1: true}}, []string{"api-4"}, []int{3}},
		{"then the cold ones, lowest first", map[string]map[int]bool{"api": {0: true, 1: true}}, []string{"api-4", "api-5", "api-6"}, []int{3, 0, 1}},
		{"another pool's cold slots do not count", map[string]map[int]bool{"web": {0: true}}, []string{"api-4"}, []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := haproxy.AssignWarm(lb, members(append([]string{"api-3"}, c.joiner...)...), after, c.cold)
			if slotOf(got, "api-3") != 2 {
				t.Fatalf("api-3 moved: %v", got)
			}
			for i, j := range c.joiner {
				if slotOf(got, j) != c.want[i] {
					t.Errorf("%s in slot %d, want %d: %v", j, slotOf(got, j), c.want[i], got)
				}
			}
		})
	}
}
