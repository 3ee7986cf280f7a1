package specs_test

import (
	"strings"
	"testing"

	"github.com/incuslb/incuslb/specs"
)

// TestHighAvailability parses spec.highAvailability blocks: the defaults,
// and each bad value rejected at its path with its reason.
// prepare parses, defaults and validates one document, as the controller does.
func prepare(in string) (*specs.LoadBalancer, error) {
	lbs, err := specs.Parse([]byte(in), "ha.yaml")
	if err != nil {
		return nil, err
	}
	specs.SetDefaults(lbs[0])
	if l := specs.Validate(lbs[0]); len(l) > 0 {
		for i := range l {
			l[i].Source = "ha.yaml"
		}
		return nil, l
	}
	return lbs[0], nil
}

func TestHighAvailability(t *testing.T) {
	cases := []struct {
		name, ha string
		want     string // "" when valid
	}{
		{"example", "{replicas: 2, virtualIP: 10.77.0.250/24, nic: eth0, vrrp: {routerID: 51, advertInterval: 100ms}}", ""},
		{"defaults", "{replicas: 2, virtualIP: 10.77.0.250/24}", ""},
		{"one replica", "{replicas: 1, virtualIP: 10.77.0.250/24}", "spec.highAvailability.replicas: must be between 2 and 8, not 1"},
		{"no replicas", "{virtualIP: 10.77.0.250/24}", "spec.highAvailability.replicas: must be between 2 and 8, not 0"},
		{"no address", "{replicas: 2}", "spec.highAvailability.virtualIP: is required"},
		{"no prefix", "{replicas: 2, virtualIP: 10.77.0.250}", `spec.highAvailability.virtualIP: must be an IPv4 address with its prefix length, such as 10.77.0.250/24, not "10.77.0.250"`},
		{"ipv6", "{replicas: 2, virtualIP: 'fd00::5/64'}", "spec.highAvailability.virtualIP: must be an IPv4 address (IPv6 virtual addresses are not supported yet)"},
		{"network address", "{replicas: 2, virtualIP: 10.77.0.0/24}", "spec.highAvailability.virtualIP: 10.77.0.0 is the network address of 10.77.0.0/24"},
		{"broadcast", "{replicas: 2, virtualIP: 10.77.0.255/24}", "spec.highAvailability.virtualIP: 10.77.0.255 is the broadcast address of 10.77.0.0/24"},
		{"loopback", "{replicas: 2, virtualIP: 127.0.0.5/8}", "spec.highAvailability.virtualIP: must be a unicast address a client can reach, not 127.0.0.5"},
		{"host prefix", "{replicas: 2, virtualIP: 10.77.0.250/32}", "spec.highAvailability.virtualIP: prefix length must be between 8 and 30"},
		{"bad nic", "{replicas: 2, virtualIP: 10.77.0.250/24, nic: 'eth0 x'}", `spec.highAvailability.nic: must be an interface name`},
		{"router id", "{replicas: 2, virtualIP: 10.77.0.250/24, vrrp: {routerID: 256}}", "spec.highAvailability.vrrp.routerID: must be between 1 and 255, not 256"},
		{"advert too short", "{replicas: 2, virtualIP: 10.77.0.250/24, vrrp: {advertInterval: 5ms}}", "spec.highAvailability.vrrp.advertInterval: must be between 10ms and 40.95s"},
		{"advert not centiseconds", "{replicas: 2, virtualIP: 10.77.0.250/24, vrrp: {advertInterval: 105ms}}", "spec.highAvailability.vrrp.advertInterval: must be a multiple of 10ms"},
		{"unknown field", "{replicas: 2, virtualIP: 10.77.0.250/24, vip: x}", "spec.highAvailability.vip: unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := base + "  highAvailability: " + c.ha + "\n"
			lb, err := prepare(in)
			if c.want == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				ha := lb.Spec.HighAvailability
				if ha.NIC != "eth0" || ha.VRRP.RouterID != 51 || ha.VRRP.AdvertInterval.Duration.String() != "100ms" {
					t.Errorf("defaults: %+v", ha)
				}
				if got := lb.InstanceNames(); strings.Join(got, ",") != "edge-1,edge-2" {
					t.Errorf("instances: %v", got)
				}
				if got := lb.VirtualAddr().String(); got != "10.77.0.250" {
					t.Errorf("virtual address: %s", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "ha.yaml: "+c.want) {
				t.Fatalf("got %v\nwant %s", err, c.want)
			}
		})
	}
}

func TestHighAvailabilityReplicaNamesFit(t *testing.T) {
	in := strings.Replace(base, "spec:\n", "spec:\n  instance: {name: "+strings.Repeat("a", 62)+"}\n", 1) +
		"  highAvailability: {replicas: 2, virtualIP: 10.77.0.250/24}\n"
	_, err := prepare(in)
	if err == nil || !strings.Contains(err.Error(), "spec.instance.name: with highAvailability the replicas are named") {
		t.Fatalf("got %v", err)
	}
}

func TestWithoutHighAvailabilityOneInstance(t *testing.T) {
	lb, err := prepare(base)
	if err != nil {
		t.Fatal(err)
	}
	if got := lb.InstanceNames(); len(got) != 1 || got[0] != "edge" {
		t.Errorf("instances: %v", got)
	}
	if lb.VirtualAddr().IsValid() {
		t.Error("a virtual address without highAvailability")
	}
}
