package incus

import (
	"reflect"
	"testing"

	"github.com/lxc/incus/v6/shared/api"
)

// TestFromFullAddresses: global IPv4 addresses go to Addresses as before;
// global-scope IPv6 ones (ULA included) to Addresses6, canonical; link-local
// and loopback to neither.
func TestFromFullAddresses(t *testing.T) {
	f := &api.InstanceFull{
		Instance: api.Instance{Name: "web-1", Status: "Running"},
		State: &api.InstanceState{Network: map[string]api.InstanceStateNetwork{
			"eth0": {Addresses: []api.InstanceStateNetworkAddress{
				{Family: "inet", Address: "10.77.0.11", Scope: "global"},
				{Family: "inet6", Address: "FD42:77:0:0:216:3EFF:FE00:11", Scope: "global"},
				{Family: "inet6", Address: "2001:db8::11", Scope: "global"},
				{Family: "inet6", Address: "fe80::216:3eff:fe00:11", Scope: "link"},
			}},
			"lo": {Addresses: []api.InstanceStateNetworkAddress{
				{Family: "inet", Address: "127.0.0.1", Scope: "local"},
				{Family: "inet6", Address: "::1", Scope: "local"},
			}},
		}},
	}
	inst := fromFull(f, "default")
	if want := map[string][]string{"eth0": {"10.77.0.11"}}; !reflect.DeepEqual(inst.Addresses, want) {
		t.Errorf("Addresses = %v, want %v", inst.Addresses, want)
	}
	if want := map[string][]string{"eth0": {"fd42:77::216:3eff:fe00:11", "2001:db8::11"}}; !reflect.DeepEqual(inst.Addresses6, want) {
		t.Errorf("Addresses6 = %v, want %v", inst.Addresses6, want)
	}
	if inst.IPv4("eth0") != "10.77.0.11" || inst.IPv6("eth0") != "fd42:77::216:3eff:fe00:11" || inst.IPv6("eth1") != "" {
		t.Errorf("IPv4 %q, IPv6 %q", inst.IPv4("eth0"), inst.IPv6("eth0"))
	}
}
