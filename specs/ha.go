package specs

import (
	"net/netip"
	"strconv"
	"time"
)

// HighAvailabilitySpec runs the load balancer as several replicas behind a
// floating (virtual) address that keepalived moves, by VRRPv3 with unicast
// peers, to a replica whose HAProxy runs. Every replica runs the same
// config and the same membership in the same slots.
type HighAvailabilitySpec struct {
	// Replicas is how many LB instances run: spec.instance.name with "-1",
	// "-2", ... appended. 2 to MaxReplicas.
	Replicas int `json:"replicas"`
	// VirtualIP is the address clients use, with the prefix length of its
	// network ("10.77.0.250/24"). It must be on the subnet of NIC and
	// outside its DHCP range.
	VirtualIP string `json:"virtualIP"`
	// NIC is the instance's interface the virtual address lives on.
	// Default: eth0.
	NIC string `json:"nic,omitempty"`
	// VRRP tunes keepalived.
	VRRP VRRPSpec `json:"vrrp,omitempty"`
}

// VRRPSpec tunes the VRRP instance of a pair.
type VRRPSpec struct {
	// RouterID is the VRRP virtual router id, 1 to 255, unique among the
	// load balancers that share a network. Default: 51.
	RouterID int `json:"routerID,omitempty"`
	// AdvertInterval is how often the holder announces itself; a backup
	// takes over after about three intervals of silence. A multiple of
	// 10ms, from 10ms to 40.95s. Default: 100ms (failover in about 0.35 s).
	AdvertInterval Duration `json:"advertInterval,omitzero"`
}

// HA defaults and bounds.
const (
	DefaultRouterID = 51
	MaxReplicas     = 8
)

// DefaultAdvertInterval is the VRRP advertisement interval.
var DefaultAdvertInterval = 100 * time.Millisecond

// ReplicaName is the instance name of replica i (1-based) of an LB whose
// spec.instance.name is base.
func ReplicaName(base string, i int) string { return base + "-" + strconv.Itoa(i) }

// InstanceNames lists the instances that run the load balancer: the one
// instance, or every replica.
func (lb *LoadBalancer) InstanceNames() []string {
	ha := lb.Spec.HighAvailability
	if ha == nil {
		return []string{lb.Spec.Instance.Name}
	}
	base := lb.Spec.Instance.Name
	if lb.ReplicaOf != "" {
		base = lb.ReplicaOf
	}
	names := make([]string, ha.Replicas)
	for i := range names {
		names[i] = ReplicaName(base, i+1)
	}
	return names
}

// VirtualAddr is the virtual address without its prefix length, or the
// zero Addr without highAvailability (or with an invalid one).
func (lb *LoadBalancer) VirtualAddr() netip.Addr {
	if lb.Spec.HighAvailability == nil {
		return netip.Addr{}
	}
	p, err := netip.ParsePrefix(lb.Spec.HighAvailability.VirtualIP)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}

func setHADefaults(ha *HighAvailabilitySpec) {
	if ha == nil {
		return
	}
	orString(&ha.NIC, DefaultNIC)
	orInt(&ha.VRRP.RouterID, DefaultRouterID)
	orDur(&ha.VRRP.AdvertInterval, Dur(DefaultAdvertInterval))
}

func validateHA(e *errs, s *LoadBalancerSpec) {
	ha := s.HighAvailability
	if ha == nil {
		return
	}
	const path = "spec.highAvailability"
	if ha.Replicas < 2 || ha.Replicas > MaxReplicas {
		e.add(path+".replicas", "must be between 2 and %d, not %d", MaxReplicas, ha.Replicas)
	} else if name := ReplicaName(s.Instance.Name, ha.Replicas); !instanceRE.MatchString(name) {
		e.add("spec.instance.name", "with highAvailability the replicas are named %q and so on, which is not an Incus instance name (at most 63 characters)", name)
	}
	validateVirtualIP(e, path+".virtualIP", ha.VirtualIP)
	if !nicRE.MatchString(ha.NIC) {
		e.add(path+".nic", "must be an interface name (letters, digits, '_', '.', '-', at most 15), not %q", ha.NIC)
	}
	if id := ha.VRRP.RouterID; id < 1 || id > 255 {
		e.add(path+".vrrp.routerID", "must be between 1 and 255, not %d", id)
	}
	adv := ha.VRRP.AdvertInterval.Duration
	switch {
	case adv < 10*time.Millisecond || adv > 40950*time.Millisecond:
		e.add(path+".vrrp.advertInterval", "must be between 10ms and 40.95s (VRRPv3 counts centiseconds), not %v", adv)
	case adv%(10*time.Millisecond) != 0:
		e.add(path+".vrrp.advertInterval", "must be a multiple of 10ms (VRRPv3 counts centiseconds), not %v", adv)
	}
}

func validateVirtualIP(e *errs, path, v string) {
	p, err := netip.ParsePrefix(v)
	switch {
	case v == "":
		e.add(path, "is required: the address clients use, with its prefix length (10.77.0.250/24)")
		return
	case err != nil:
		e.add(path, "must be an IPv4 address with its prefix length, such as 10.77.0.250/24, not %q", v)
		return
	}
	a := p.Addr()
	switch {
	case !a.Is4():
		e.add(path, "must be an IPv4 address (IPv6 virtual addresses are not supported yet), not %q", v)
	case p.Bits() < 8 || p.Bits() > 30:
		e.add(path, "prefix length must be between 8 and 30 (the length of the network the address is on), not /%d", p.Bits())
	case a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast():
		e.add(path, "must be a unicast address a client can reach, not %s", a)
	case a == p.Masked().Addr():
		e.add(path, "%s is the network address of %s", a, p.Masked())
	case a == broadcast(p):
		e.add(path, "%s is the broadcast address of %s", a, p.Masked())
	}
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
