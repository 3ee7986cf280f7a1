package haproxy_test

import (
	"testing"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

func TestEndpointBracketsIPv6(t *testing.T) {
	for _, c := range []struct {
		slot haproxy.Slot
		want string
	}{
		{haproxy.Slot{Address: "10.77.0.11", Port: 8080}, "10.77.0.11:8080"},
		{haproxy.Slot{Address: "fd42:77::216:3eff:fe00:11", Port: 8080}, "[fd42:77::216:3eff:fe00:11]:8080"},
	} {
		if got := c.slot.Endpoint(); got != c.want {
			t.Errorf("Endpoint(%s) = %q, want %q", c.slot.Address, got, c.want)
		}
	}
}

// TestParseLayoutIPv6 reads back IPv6 members, beside IPv4 ones and
// parked slots, from what Render wrote.
func TestParseLayoutIPv6(t *testing.T) {
	lb := poolLB(4)
	lb.Spec.Pools[0].Family = specs.FamilyAny
	ms := map[string][]haproxy.Member{"api": {
		{Name: "api-1", Address: "fd42:77::216:3eff:fe00:11"},
		{Name: "api-2", Address: "10.77.0.12"},
		{Name: "api-3", Address: "2001:db8::3", Port: 9000},
	}}
	want := haproxy.Assign(lb, ms, nil)
	got := haproxy.ParseLayout(haproxy.Render(lb, want, haproxy.Options{}), map[string]bool{"api": true})
	if got.String() != want.String() {
		t.Fatalf("ParseLayout(Render(l)) != l:\n got %s\nwant %s", got, want)
	}
	// A second Assign of the same members keeps every slot.
	if again := haproxy.Assign(lb, ms, got); again.String() != want.String() {
		t.Fatalf("members moved:\n got %s\nwant %s", again, want)
	}
}

// TestParseServersStateIPv6: an answer of HAProxy 2.6 after `set server
// b/srv2 addr fd42:77::216:3eff:fe00:12 port 8080` (srv1 was configured as
// [fd42:77::5]:8080): the address comes without brackets, the port apart.
func TestParseServersStateIPv6(t *testing.T) {
	const out = `1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
3 b 1 srv1 fd42:77::5 2 0 1 1 1 1 0 2 0 0 0 0 - 8080 - 0 0 - - 0
3 b 2 srv2 fd42:77::216:3eff:fe00:12 0 5 1 1 1 1 0 0 8 0 0 0 - 8080 - 0 0 - - 0
`
	states, err := haproxy.ParseServersState(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 2 {
		t.Fatalf("got %d servers, want 2", len(states))
	}
	for i, want := range []string{"fd42:77::5", "fd42:77::216:3eff:fe00:12"} {
		s := states[i]
		if s.Address != want || s.Port != 8080 {
			t.Errorf("server %s: %s port %d, want %s port 8080", s.Name, s.Address, s.Port, want)
		}
		if ep := (haproxy.Slot{Address: s.Address, Port: s.Port}).Endpoint(); ep != "["+want+"]:8080" {
			t.Errorf("endpoint %q", ep)
		}
	}
}
