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

// HandoverFlag is the file keepalived watches (track_file): 1 lowers this
// replica's priority below every peer's, so that a healthy peer takes the
// address over while this one still holds it and still serves; 0 (written
// when keepalived starts) is normal.
const HandoverFlag = "/run/incuslb-handover"

// HandoverPath is the script systemd runs before keepalived stops
// (ExecStop, so at a clean stop of the instance too); Handover renders it.
const HandoverPath = "/etc/keepalived/incuslb-handover"

// Config is one replica's view of the pair.
type Config struct {
	LB        string        // the LoadBalancer's metadata.name
	Replica   string        // this replica's instance name
	Interface string        // where the virtual address lives
	Virtual   netip.Prefix  // the virtual address with its prefix length
	RouterID  int           // VRRP virtual router id
	Advert    time.Duration // advertisement interval, a multiple of 10ms
	Self      netip.Addr    // this replica's own address on Interface
	Peers     []netip.Addr  // the other replicas' addresses, sorted
}

// The priorities. Every replica runs at Priority, and a replica at the
// same priority never takes the address from the holder: one that comes
// back stays a backup (no flapping). A holder whose HAProxy is not running
// drops by HAProxyDownWeight, one asked to hand over by HandoverWeight;
// a healthy peer, now higher, preempts it. The holder keeps the address
// until the peer has taken it (VRRP: a master yields only to a higher
// advertisement), so no instant is left with no holder.
const (
	Priority          = 100
	HAProxyDownWeight = -50
	HandoverWeight    = -60
)

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
	// HAProxy's master. (track_process would need the kernel's
	// process-event connector, which an unprivileged container lacks.)
	w("vrrp_script incuslb_haproxy {")
	w("    script %q", CheckPath)
	w("    interval 1")
	w("    timeout 1")
	w("    fall 2")
	w("    rise 1")
	w("    weight %d", HAProxyDownWeight)
	w("}")
	w("")
	// Read again as soon as it changes (inotify), not polled.
	w("vrrp_track_file incuslb_handover {")
	w("    file %q", HandoverFlag)
	w("    weight %d", HandoverWeight)
	w("    init_file 0")
	w("}")
	w("")
	w("vrrp_instance %s {", vrrpName(c.LB))
	w("    state BACKUP")
	w("    interface %s", c.Interface)
	w("    virtual_router_id %d", c.RouterID)
	w("    priority %d", Priority)
	w("    advert_int %s", seconds(c.Advert))
	// With no peer known (the others do not run), multicast: keepalived
	// rejects a unicast_peer block with no peer in it.
	if len(c.Peers) > 0 {
		if c.Self.IsValid() {
			w("    unicast_src_ip %s", c.Self)
		}
		w("    unicast_peer {")
		for _, p := range c.Peers {
			w("        %s", p)
		}
		w("    }")
	}
	w("    virtual_ipaddress {")
	w("        %s dev %s", c.Virtual, c.Interface)
	w("    }")
	w("    track_script {")
	w("        incuslb_haproxy")
	w("    }")
	w("    track_file {")
	w("        incuslb_handover")
	w("    }")
	w("}")
	return b.String()
}

// HandoverWait is how long Handover waits for a peer to take the address:
// a peer preempts once its master-down timer runs out (3 advertisements
// and a skew), so ten advertisements and a second are plenty.
func HandoverWait(advert time.Duration) time.Duration { return 10*advert + time.Second }

// Handover returns the script systemd runs before keepalived stops: it
// raises the handover flag and waits, at most HandoverWait, until this
// replica no longer holds the virtual address (no peer may be left to take
// it). It needs only sh, grep and sleep (Essential) and /proc.
func Handover(c Config) string {
	tenths := int(HandoverWait(c.Advert) / (100 * time.Millisecond))
	return fmt.Sprintf(`#!/bin/sh
# Written by incuslb for LoadBalancer %[1]s: run by systemd before keepalived
# stops (a clean stop of the instance stops keepalived before HAProxy).
# While this replica holds %[2]s, a healthy peer takes it over first,
# so that no instant is left with no holder and HAProxy here serves until
# then.
echo 1 >%[3]s
i=0
while grep -q -- '-- %[5]s$' /proc/net/fib_trie 2>/dev/null && [ $i -lt %[4]d ]; do
  sleep 0.1
  i=$((i + 1))
done
exit 0
`, c.LB, c.Virtual.Addr(), HandoverFlag, tenths, strings.ReplaceAll(c.Virtual.Addr().String(), ".", `\.`))
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
