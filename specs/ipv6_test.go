package specs_test

import (
	"testing"

	"github.com/incuslb/incuslb/specs"
)

// TestValidateIPv6 covers pools[].family and IPv6 static servers.
func TestValidateIPv6(t *testing.T) {
	static := func(addrs ...string) specs.Pool {
		p := specs.Pool{Name: "git"}
		for i, a := range addrs {
			p.Servers = append(p.Servers, specs.Server{Name: string(rune('a' + i)), Address: a})
		}
		return p
	}
	cases := []struct {
		name   string
		mutate func(lb *specs.LoadBalancer)
		want   []string
	}{
		{"family ipv6", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Family = "ipv6" }, nil},
		{"family any", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Family = "any" }, nil},
		{"family unknown", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Family = "inet6" },
			[]string{`spec.pools[0].family: must be one of ipv4, ipv6 or any, not "inet6"`}},
		{"family on static pool", func(lb *specs.LoadBalancer) {
			p := static("10.0.0.1:80")
			p.Family = "ipv6"
			lb.Spec.Pools = append(lb.Spec.Pools, p)
		}, []string{"spec.pools[1].family: applies to selector pools only"}},
		{"ipv6 static servers", func(lb *specs.LoadBalancer) {
			lb.Spec.Pools = append(lb.Spec.Pools, static("[2001:db8::1]:8080", "[fd42:77::10]:22", "[::1]:80"))
		}, nil},
		{"ipv6 without brackets", func(lb *specs.LoadBalancer) {
			lb.Spec.Pools = append(lb.Spec.Pools, static("2001:db8::1:8080"))
		}, []string{"spec.pools[1].servers[0].address: must be host:port, not \"2001:db8::1:8080\" (an IPv6 address goes in brackets: [2001:db8::1]:8080)"}},
		{"ipv6 bad port", func(lb *specs.LoadBalancer) {
			lb.Spec.Pools = append(lb.Spec.Pools, static("[2001:db8::1]:0"))
		}, []string{"spec.pools[1].servers[0].address: port must be between 1 and 65535"}},
		{"ipv6 unusable", func(lb *specs.LoadBalancer) {
			lb.Spec.Pools = append(lb.Spec.Pools, static("[::]:80", "[ff02::1]:80", "[fe80::1]:80", "[fe80::1%eth0]:80", "[2001:db8::zz]:80"))
		}, []string{
			"spec.pools[1].servers[0].address: must be a server's address, not the unspecified address",
			"spec.pools[1].servers[1].address: must be a unicast address",
			"spec.pools[1].servers[2].address: must not be link-local",
			`spec.pools[1].servers[3].address: host must be an IPv4 address, [an IPv6 address] or a DNS name, not "fe80::1%eth0"`,
			`spec.pools[1].servers[4].address: host must be an IPv4 address, [an IPv6 address] or a DNS name, not "2001:db8::zz"`,
		}},
		{"frontend ipv6", func(lb *specs.LoadBalancer) { lb.Spec.Frontend.IPv6 = true }, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lb := valid(t)
			tc.mutate(lb)
			specs.SetDefaults(lb)
			expect(t, specs.Validate(lb), tc.want)
		})
	}
}

// TestFamilyDefault: a selector pool without family is ipv4, as before
// family existed; a static pool gets none.
func TestFamilyDefault(t *testing.T) {
	lb := valid(t)
	lb.Spec.Pools = append(lb.Spec.Pools, specs.Pool{Name: "git", Servers: []specs.Server{{Name: "a", Address: "[2001:db8::1]:80"}}})
	specs.SetDefaults(lb)
	if got := lb.Spec.Pools[0].Family; got != specs.FamilyIPv4 {
		t.Errorf("selector pool family = %q, want ipv4", got)
	}
	if got := lb.Spec.Pools[1].Family; got != "" {
		t.Errorf("static pool family = %q, want none", got)
	}
}
