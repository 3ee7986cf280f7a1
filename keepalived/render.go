package keepalived

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// ConfigPath is where Debian's keepalived reads its config.
const ConfigPath = "/etc/keepalived/keepalived.conf"

// CheckPath is the script keepalived runs to learn whether HAProxy runs;
// Check is its content. It needs only sh and its kill builtin.
const (
	CheckPath = "/etc/keepalived/incuslb-haproxy-alive"
	Check     = `#!/bin/sh
# Written by incuslb: succeeds while HAProxy's master process runs (the
# pid file is the one Debian's haproxy.service and incuslb both use).
pid=$(cat /run/haproxy.pid 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
`
)

// Config is one replica's view of the pair.
type Config struct {
	LB        string        // the LoadBalancer's metadata.name
	Replica   string        // this replica's instance name
	Index     int           // 1-based: replica 1 gets the highest priority
	Interface string        // where the virtual address lives
	Virtual   netip.Prefix  // the virtual address with its prefix length
	RouterID  int           // VRRP virtual router id
	Advert    time.Duration // advertisement interval, a multiple of 10ms
	Self      netip.Addr    // this replica's own address on Interface
	Peers     []netip.Addr  // the other replicas' addresses, sorted
}

// Priority is replica i's VRRP priority: it only decides the first
// election (nopreempt), and no two replicas share one.
func Priority(index int) int { return 150 - 10*(index-1) }

// Render returns keepalived.conf for c. The same Config gives the same
// bytes.
func Render(c Config) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Written by incuslb for LoadBalancer %s, replica %s.", c.LB, c.Replica)
	w("# incuslb rewrites this file: change the LoadBalancer spec instead.")
	w("global_defs {")
	w("    router_id %s", c.Replica)
	w("    vrrp_version 3")
	// The backup that takes over announces the address at once and again
	// a second later, so that the bridge and the clients' neighbour tables
	// follow it.
	w("    vrrp_garp_master_delay 1")
	w("    vrrp_garp_master_repeat 3")
	w("    vrrp_garp_interval 0.001")
	w("    script_user root")
	w("    enable_script_security")
	w("}")
	w("")
	// HAProxy's master: while it is not running this replica is in FAULT
	// and gives the address up. (track_process would need the kernel's
	// process-event connector, which an unprivileged container lacks.)
	w("vrrp_script incuslb_haproxy {")
	w("    script %q", CheckPath)
	w("    interval 1")
	w("    timeout 1")
	w("    fall 2")
	w("    rise 1")
	w("}")
	w("")
	w("vrrp_instance %s {", vrrpName(c.LB))
	w("    state BACKUP")
	w("    nopreempt")
	w("    interface %s", c.Interface)
	w("    virtual_router_id %d", c.RouterID)
	w("    priority %d", Priority(c.Index))
	w("    advert_int %s", seconds(c.Advert))
	if c.Self.IsValid() {
		w("    unicast_src_ip %s", c.Self)
	}
	w("    unicast_peer {")
	for _, p := range c.Peers {
		w("        %s", p)
	}
	w("    }")
	w("    virtual_ipaddress {")
	w("        %s dev %s", c.Virtual, c.Interface)
	w("    }")
	w("    track_script {")
	w("        incuslb_haproxy")
	w("    }")
	w("}")
	return b.String()
}

// vrrpName is the VRRP instance's name: the LB's (a DNS label).
func vrrpName(lb string) string { return "incuslb_" + strings.ReplaceAll(lb, "-", "_") }

// seconds writes d in seconds with at most two decimals ("0.1", "1").
func seconds(d time.Duration) string {
	cs := d.Milliseconds() / 10
	if cs%100 == 0 {
		return fmt.Sprintf("%d", cs/100)
	}
	return strings.TrimRight(fmt.Sprintf("%d.%02d", cs/100, cs%100), "0")
}
