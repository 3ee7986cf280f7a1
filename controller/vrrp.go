package controller

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/keepalived"
	"github.com/incuslb/incuslb/specs"
)

// ensureVRRP makes keepalived on every running replica of a pair run the
// config for the replicas as they are now (their own addresses are the
// unicast peers), and notes which replica holds the virtual address. A
// config is tested with keepalived -t before it replaces the one in use;
// a running keepalived reloads it (SIGHUP) and keeps its state.
func (a *Applier) ensureVRRP(ctx context.Context, lb *specs.LoadBalancer, top *Plan) error {
	ha := lb.Spec.HighAvailability
	vip := lb.VirtualAddr()
	insts := map[string]*incus.Instance{}
	for _, p := range top.Replicas {
		if p.inst != nil {
			insts[p.inst.Name] = p.inst
		}
	}
	// Own addresses of every replica that runs, by replica.
	own := map[string]netip.Addr{}
	for _, r := range Replicas(lb) {
		in := r.Spec.Instance
		inst, ok := insts[in.Name]
		if !ok {
			// Its own pass failed. Incus forwards a read of an instance
			// to its member: none of one on a lost member.
			if _, lost := a.onLostMember(in.Project, in.Name); lost {
				continue
			}
			got := a.readReplica(ctx, in)
			if got == nil {
				continue // absent or unreadable: not a peer this pass
			}
			inst, insts[in.Name] = got, got
		}
		if addr, err := netip.ParseAddr(ownAddress(r, inst)); err == nil && inst.Running() {
			own[in.Name] = addr
		}
	}
	var errs []error
	for _, r := range Replicas(lb) {
		in := r.Spec.Instance
		self, ok := own[in.Name]
		if !ok {
			continue
		}
		var peers []netip.Addr
		for name, addr := range own {
			if name != in.Name {
				peers = append(peers, addr)
			}
		}
		if _, pushed := a.vrrpPushed.get(in.Project + "/" + in.Name); len(peers) == 0 && pushed {
			// No other replica runs now: it keeps the config it runs,
			// whose peers come back with their instances. (A replica
			// that has none yet gets one with no peer: multicast.)
			continue
		}
		slices.SortFunc(peers, func(x, y netip.Addr) int { return x.Compare(y) })
		kc := keepalived.Config{
			LB: lb.Metadata.Name, Replica: in.Name, Interface: ha.NIC,
			Virtual: netip.MustParsePrefix(ha.VirtualIP), RouterID: ha.VRRP.RouterID,
			Advert: ha.VRRP.AdvertInterval.Duration, Self: self, Peers: peers,
		}
		// A member lost meanwhile ends the calls into its replica at once.
		rctx, stop := a.abortIfLost(ctx, in.Project, in.Name)
		changed, err := a.pushVRRP(rctx, r, keepalived.Render(kc), keepalived.Handover(kc))
		stop()
		if err != nil {
			errs = append(errs, fmt.Errorf("replica %s: keepalived: %w", in.Name, err))
			continue
		}
		if changed != "" {
			top.VRRP = append(top.VRRP, in.Name+": "+changed)
		}
	}
	for _, r := range Replicas(lb) {
		if holds(insts[r.Spec.Instance.Name], ha.NIC, vip) {
			top.Holder = r.Spec.Instance.Name
		}
	}
	if top.Holder != "" {
		a.holders.set(lb.Metadata.Name, top.Holder)
	} else if len(own) > 0 {
		top.waiting = true // an election is under way: look again
		if top.RequeueAfter == 0 || top.RequeueAfter > vrrpSettle {
			top.RequeueAfter = vrrpSettle
		}
	}
	return errors.Join(errs...)
}

// readReplica reads a replica whose own pass failed (with its addresses
// when it runs), or nil; a read that waits on a member found lost
// meanwhile ends then.
func (a *Applier) readReplica(ctx context.Context, in specs.InstanceSpec) *incus.Instance {
	ctx, stop := a.abortIfLost(ctx, in.Project, in.Name)
	defer stop()
	got, err := a.Incus.GetInstance(ctx, in.Project, in.Name, false)
	if err != nil {
		return nil
	}
	a.locations.set(in.Project+"/"+in.Name, got.Location)
	if a.unreachable(got); got.Running() {
		if got, err = a.Incus.GetInstance(ctx, in.Project, in.Name, true); err != nil {
			return nil
		}
	}
	return got
}

// pushVRRP installs keepalived in a replica when its image lacks it, and
// makes it run conf, with handover as the script that runs before it
// stops. It returns what it changed ("" for nothing).
func (a *Applier) pushVRRP(ctx context.Context, r *specs.LoadBalancer, conf, handover string) (string, error) {
	in := r.Spec.Instance
	key := in.Project + "/" + in.Name
	// handover follows from the same Config as conf: conf alone says
	// whether both are in place.
	if pushed, ok := a.vrrpPushed.get(key); ok && pushed == conf {
		return "", nil // this process made it run conf; no read on each pass
	}
	have, err := a.Incus.ReadFile(ctx, in.Project, in.Name, keepalived.ConfigPath)
	if err != nil && !errors.Is(err, incus.ErrNotFound) {
		return "", err
	}
	var did []string
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c", "command -v keepalived >/dev/null || " + installScript("keepalived")}, nil)
	if err != nil {
		return "", err
	}
	if res.Code != 0 {
		return "", fmt.Errorf("the image lacks keepalived and installing it from the instance's package mirror failed (exit %d; put keepalived in the image): %s", res.Code, tail(res.Output(), 5))
	}
	if strings.Contains(string(res.Stdout), installedMark) {
		did = append(did, "installed keepalived")
	}
	if err := a.Incus.WriteFile(ctx, in.Project, in.Name, keepalived.CheckPath, []byte(keepalived.Check), incus.FileMode{Mode: 0o755}); err != nil {
		return "", err
	}
	if err := a.Incus.WriteFile(ctx, in.Project, in.Name, keepalived.HandoverPath, []byte(handover), incus.FileMode{Mode: 0o755}); err != nil {
		return "", err
	}
	tmp, err := a.Incus.WriteTemp(ctx, in.Project, in.Name, keepalived.ConfigPath, []byte(conf), incus.FileMode{Mode: 0o644})
	if err != nil {
		return "", err
	}
	res, err = a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c", vrrpScript, "vrrp", tmp}, nil)
	if err != nil {
		return "", err
	}
	if res.Code != 0 {
		return "", fmt.Errorf("exit %d: %s", res.Code, tail(res.Output(), 8))
	}
	a.vrrpPushed.set(key, conf)
	if string(have) != conf {
		did = append(did, "wrote keepalived.conf")
	}
	if out := strings.TrimSpace(string(res.Stdout)); out != "" {
		did = append(did, out)
	}
	return strings.Join(did, ", "), nil
}

// installedMark is what installScript prints once it installed a package.
const installedMark = "incuslb: installed"

// installScript installs a Debian package in an instance whose image lacks
// it (from the instance's own package mirror).
func installScript(pkg string) string {
	return fmt.Sprintf("{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq %s >/dev/null && echo '%s %s'; }",
		pkg, installedMark, pkg)
}

// vrrpScript tests the new config ($1), puts it in place and makes
// keepalived run it: a reload (SIGHUP) when it runs, else a start. Under
// systemd a drop-in (vrrpDropIn) orders keepalived after HAProxy, so that
// a clean stop of the instance stops keepalived first, and has it hand the
// address over before it stops. kill is the shell's: the image need not
// have procps.
const vrrpScript = `set -e
new=$1 conf=` + keepalived.ConfigPath + `
if ! out=$(keepalived -t -f "$new" 2>&1); then rm -f "$new"; echo "$out" >&2; echo "keepalived -t rejected the config" >&2; exit 3; fi
mv -f "$new" "$conf"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  d=/etc/systemd/system/keepalived.service.d
  want='` + vrrpDropIn + `'
  if [ "$(cat "$d/incuslb.conf" 2>/dev/null)" != "$want" ]; then
    mkdir -p "$d"
    printf '%s\n' "$want" >"$d/incuslb.conf"
    systemctl daemon-reload
  fi
  systemctl enable -q keepalived 2>/dev/null || true
  pid=$(systemctl show -p MainPID --value keepalived)
  if [ "${pid:-0}" != 0 ]; then kill -HUP "$pid"; echo "reloaded keepalived"; else systemctl start keepalived; echo "started keepalived"; fi
else
  if [ -s /run/keepalived.pid ] && kill -0 "$(cat /run/keepalived.pid)" 2>/dev/null; then
    kill -HUP "$(cat /run/keepalived.pid)"; echo "reloaded keepalived"
  else
    echo 0 >` + keepalived.HandoverFlag + `; keepalived; echo "started keepalived"
  fi
fi`

// vrrpDropIn is the systemd drop-in for keepalived.service: stopped before
// HAProxy (After=), handing the address over first (ExecStop), and back to
// normal priority when it starts (ExecStartPre clears the flag).
const vrrpDropIn = `[Unit]
# incuslb: stop keepalived before HAProxy, so a clean stop hands the virtual address over first.
After=haproxy.service
[Service]
ExecStartPre=/bin/sh -c "echo 0 >` + keepalived.HandoverFlag + `"
ExecStop=` + keepalived.HandoverPath + `
TimeoutStopSec=30`
