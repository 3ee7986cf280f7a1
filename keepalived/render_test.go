package keepalived

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func TestRenderGolden(t *testing.T) {
	cases := map[string]Config{
		"pair-1": {LB: "edge", Replica: "edge-1", Interface: "eth0",
			Virtual: netip.MustParsePrefix("10.77.0.250/24"), RouterID: 51, Advert: 100 * time.Millisecond,
			Self: netip.MustParseAddr("10.77.0.10"), Peers: []netip.Addr{netip.MustParseAddr("10.77.0.11")}},
		"three-2": {LB: "my-edge", Replica: "my-edge-2", Interface: "eth1",
			Virtual: netip.MustParsePrefix("192.168.5.9/16"), RouterID: 7, Advert: 1500 * time.Millisecond,
			Self: netip.MustParseAddr("192.168.0.3"), Peers: []netip.Addr{netip.MustParseAddr("192.168.0.2"), netip.MustParseAddr("192.168.0.4")}},
		"alone": {LB: "edge", Replica: "edge-2", Interface: "eth0",
			Virtual: netip.MustParsePrefix("10.77.0.250/24"), RouterID: 51, Advert: 100 * time.Millisecond,
			Self: netip.MustParseAddr("10.77.0.11")},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			got := Render(c)
			if Render(c) != got {
				t.Fatal("not deterministic")
			}
			checkGolden(t, name+".conf.golden", got)
		})
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Millisecond: "0.01", 100 * time.Millisecond: "0.1", 250 * time.Millisecond: "0.25",
		time.Second: "1", 1500 * time.Millisecond: "1.5", 40950 * time.Millisecond: "40.95",
	} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %s, want %s", d, got, want)
		}
	}
}

func TestHandoverGolden(t *testing.T) {
	c := Config{LB: "edge", Replica: "edge-1", Interface: "eth0", Virtual: netip.MustParsePrefix("10.77.0.250/24"),
		RouterID: 51, Advert: 100 * time.Millisecond}
	checkGolden(t, "handover.sh.golden", Handover(c))
}

// checkGolden compares got with testdata/name (go test -update rewrites it).
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("differs from %s (go test -update to accept):\n%s", golden, got)
	}
}

// Each weight alone must bring a holder below a healthy peer and stay
// within VRRP's 1..254 (keepalived clamps the sum of both to 1).
func TestPriorities(t *testing.T) {
	for _, w := range []int{HAProxyDownWeight, HandoverWeight} {
		if p := Priority + w; p >= Priority || p < 1 {
			t.Errorf("priority %d with weight %d: %d", Priority, w, p)
		}
	}
	for advert, want := range map[time.Duration]time.Duration{100 * time.Millisecond: 2 * time.Second, time.Second: 11 * time.Second} {
		if got := HandoverWait(advert); got != want {
			t.Errorf("HandoverWait(%v) = %v, want %v", advert, got, want)
		}
	}
}
