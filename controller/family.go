package controller

import (
	"net/netip"

	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// memberAddress is the address pool p reaches inst on, by the pool's
// family: its global IPv4 address on p's NIC (ipv4, the default), its
// global IPv6 one (ipv6), or the IPv4 one when it has one, else the IPv6
// one (any). "" when it has none of that family.
func memberAddress(inst *incus.Instance, p *specs.Pool) string {
	switch p.Family {
	case specs.FamilyIPv6:
		return inst.IPv6(p.NIC)
	case specs.FamilyAny:
		if a := inst.IPv4(p.NIC); a != "" {
			return a
		}
		return inst.IPv6(p.NIC)
	default:
		return inst.IPv4(p.NIC)
	}
}

// setAddress records addr as inst's address on nic, in the map of its
// family (the address of a member already in a slot, read from the
// running config instead of from Incus).
func setAddress(inst *incus.Instance, nic, addr string) {
	a, err := netip.ParseAddr(addr)
	switch {
	case err != nil:
	case a.Is4():
		if inst.Addresses == nil {
			inst.Addresses = map[string][]string{}
		}
		inst.Addresses[nic] = append(inst.Addresses[nic], addr)
	default:
		if inst.Addresses6 == nil {
			inst.Addresses6 = map[string][]string{}
		}
		inst.Addresses6[nic] = append(inst.Addresses6[nic], addr)
	}
}
