package haproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/incuslb/incuslb/specs"
)

// Member is one backend instance of a selector pool.
type Member struct {
	Name    string `json:"name"`           // the Incus instance name
	Address string `json:"address"`        // IPv4 or IPv6 address, no brackets
	Port    int    `json:"port,omitempty"` // 0 means the pool's port
}

// Slot is one pre-allocated server line. The zero Slot is parked.
type Slot struct {
	Member  string // instance name
	Address string
	Port    int
}

// Parked reports whether the slot holds no member.
func (s Slot) Parked() bool { return s.Address == "" }

// Endpoint is "address:port", an IPv6 address in brackets
// ("[fd42::5]:8080"), as haproxy.cfg's server lines take it.
func (s Slot) Endpoint() string { return net.JoinHostPort(s.Address, strconv.Itoa(s.Port)) }

// Layout holds the slots of every selector pool: Layout[pool][i] is the
// server named SlotName(i).
type Layout map[string][]Slot

// The slot codec: slot index i (0-based) is the server "srv<i+1>" of its
// backend, and an empty slot is parked at ParkedAddress:
// ParkedPort. This file is the only place that knows either.
const (
	ParkedAddress = "127.0.0.1"
	ParkedPort    = specs.ReservedPort // specs rejects it as a frontend or stats port
	slotPrefix    = "srv"
	// MaxSlots bounds a slot index read back from a container or from
	// HAProxy: a hand-edited "server srv2000000" line must not make the
	// controller allocate two million slots.
	MaxSlots = 65536
)

// SlotName is the HAProxy server name of slot index i (0-based).
func SlotName(i int) string { return slotPrefix + strconv.Itoa(i+1) }

// SlotIndex is the inverse of SlotName: the 0-based index of a server name,
// or false when the name is not a slot's (or beyond MaxSlots).
func SlotIndex(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, slotPrefix)
	if !ok || digits == "" || digits[0] == '0' || len(digits) > 5 {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n < 1 || n > MaxSlots {
		return 0, false
	}
	return n - 1, true
}

// IsParked reports whether addr:port is the parked address (or empty).
func IsParked(addr string, port int) bool {
	return addr == "" || (addr == ParkedAddress && port == ParkedPort)
}

// Assign places members into slots. Every member that prev already holds at
// the same address and port keeps its slot; new members take the lowest
// free slots in name order; departed members' slots are parked. A pool that
// needs more slots than it has grows by whole multiples of its configured
// slot count (a structural change: HAProxy must reload to see new lines).
// Slots never shrink, so a pool whose size hovers at a boundary does not
// reload back and forth.
//
// New members take the free slots not in cold first (cold[pool][index]):
// see AssignWarm.
func Assign(lb *specs.LoadBalancer, members map[string][]Member, prev Layout) Layout {
	return AssignWarm(lb, members, prev, nil)
}

// AssignWarm is Assign where new members take a cold slot (cold[pool]
// holds its index) only when no other slot is free. A slot parked less than
// a check interval ago is cold: its check timer still holds the date its
// last member's next regular check was due (HAProxy reschedules a check
// only when one runs), so the first check of a member that fills it may
// wait that long; a slot that rested longer is checked every downinter.
func AssignWarm(lb *specs.LoadBalancer, members map[string][]Member, prev Layout, cold map[string]map[int]bool) Layout {
	out := Layout{}
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		want := map[string]Slot{} // endpoint -> slot content
		for _, m := range members[p.Name] {
			port := m.Port
			if port == 0 {
				port = p.Port
			}
			s := Slot{Member: m.Name, Address: m.Address, Port: port}
			want[s.Endpoint()] = s
		}
		n := max(p.Slots, len(prev[p.Name]))
		for n < len(want) {
			n += p.Slots
		}
		slots := make([]Slot, n)
		for i, old := range prev[p.Name] {
			if old.Parked() {
				continue
			}
			if s, ok := want[old.Endpoint()]; ok {
				slots[i] = s
				delete(want, old.Endpoint())
			}
		}
		newcomers := make([]Slot, 0, len(want))
		for _, s := range want {
			newcomers = append(newcomers, s)
		}
		sort.Slice(newcomers, func(i, j int) bool {
			if newcomers[i].Member != newcomers[j].Member {
				return newcomers[i].Member < newcomers[j].Member
			}
			return newcomers[i].Endpoint() < newcomers[j].Endpoint()
		})
		var warm, chilly []int
		for i := range slots {
			switch {
			case !slots[i].Parked():
			case cold[p.Name][i]:
				chilly = append(chilly, i)
			default:
				warm = append(warm, i)
			}
		}
		free := append(warm, chilly...)
		for k, s := range newcomers {
			slots[free[k]] = s
		}
		out[p.Name] = slots
	}
	return out
}

// ParseLayout reads the slots of the named selector pools (every backend
// when pools is nil) back from a config that Render wrote, so that the next
// Assign keeps members where they are. Lines it does not recognise are
// ignored.
func ParseLayout(cfg []byte, pools map[string]bool) Layout {
	out := Layout{}
	var backend string
	sc := bufio.NewScanner(bytes.NewReader(cfg))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			backend = ""
			if fields[0] == "backend" && len(fields) > 1 && (pools == nil || pools[fields[1]]) {
				backend = fields[1]
			}
			continue
		}
		if backend == "" || fields[0] != "server" || len(fields) < 3 {
			continue
		}
		i, ok := SlotIndex(fields[1])
		if !ok {
			continue
		}
		for len(out[backend]) <= i {
			out[backend] = append(out[backend], Slot{})
		}
		host, portStr, err := net.SplitHostPort(fields[2])
		port, _ := strconv.Atoi(portStr)
		if err != nil || indexOf(fields, "disabled") >= 0 || IsParked(host, port) {
			continue
		}
		var member string
		if i := indexOf(fields, "#"); i >= 0 && i+1 < len(fields) {
			member = fields[i+1]
		}
		out[backend][i] = Slot{Member: member, Address: host, Port: port}
	}
	return out
}

func indexOf(fields []string, s string) int {
	for i, f := range fields {
		if f == s {
			return i
		}
	}
	return -1
}

// String is a compact, deterministic description, for logs and tests.
func (l Layout) String() string {
	var b strings.Builder
	for _, pool := range slices.Sorted(maps.Keys(l)) {
		fmt.Fprintf(&b, "%s:", pool)
		for i, s := range l[pool] {
			if !s.Parked() {
				fmt.Fprintf(&b, " %s=%s(%s)", SlotName(i), s.Member, s.Endpoint())
			}
		}
		fmt.Fprintf(&b, " [%d slots]\n", len(l[pool]))
	}
	return b.String()
}

// CheckMember rejects a member whose fields could not be written safely
// into haproxy.cfg: the address must be an IPv4 or IPv6 address (no zone,
// no brackets, not an IPv4 address written as IPv6) and the port in range.
func CheckMember(m Member) error {
	a, err := netip.ParseAddr(m.Address)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return fmt.Errorf("address must be an IPv4 or IPv6 address, not %q", m.Address)
	}
	if m.Port < 0 || m.Port > 65535 {
		return fmt.Errorf("port must be between 1 and 65535, not %d", m.Port)
	}
	return nil
}

// Structure returns cfg with the content of every slot line of the named
// selector pools blanked out. Two configs with equal structure differ only
// in which members sit in which slots: a change between them can be made
// through the runtime API, without a reload.
func Structure(cfg []byte, pools map[string]bool) []byte {
	var out bytes.Buffer
	var backend string
	for _, line := range bytes.SplitAfter(cfg, []byte("\n")) {
		s := string(line)
		if !strings.HasPrefix(s, " ") {
			backend = ""
			if f := strings.Fields(s); len(f) > 1 && f[0] == "backend" && pools[f[1]] {
				backend = f[1]
			}
		} else if backend != "" {
			if f := strings.Fields(s); len(f) >= 3 && f[0] == "server" && isSlot(f[1]) {
				out.WriteString("    server " + f[1] + " <slot>\n")
				continue
			}
		}
		out.Write(line)
	}
	return out.Bytes()
}

func isSlot(name string) bool { _, ok := SlotIndex(name); return ok }
