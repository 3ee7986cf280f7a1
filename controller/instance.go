package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// ensureInstance makes the LB instance exist, belong to this LB, run, have
// an address, have haproxy and the proxy devices. In a dry run it only
// fills the plan. The caller has checked ownership (see ownership): this
// never touches an instance owned by another LoadBalancer.
func (a *Applier) ensureInstance(ctx context.Context, lb *specs.LoadBalancer, obs *Observation, p *Plan, dryRun bool) error {
	in := lb.Spec.Instance
	key := in.Project + "/" + in.Name
	log := a.Log.WithValues("lb", lb.Metadata.Name, "instance", key)
	switch {
	case !obs.Exists():
		p.CreateInstance = true
		if dryRun {
			return nil
		}
		if err := a.socketDir(); err != nil {
			return err
		}
		target, err := a.target(ctx, lb)
		if err != nil {
			return fmt.Errorf("choosing a cluster member for %s: %w", key, err)
		}
		log.Info("creating LB instance", "image", in.Image, "target", target)
		if err := a.Incus.CreateInstance(ctx, in.Project, in.Name, in.Image, in.Profiles,
			map[string]string{KeyLB: lb.Metadata.Name}, target); err != nil {
			return err
		}
		if target != "" {
			// Known from now on: a pass that reads the new instance while
			// its member is lost ends then (abortIfLost), not after
			// Incus's own timeouts.
			a.locations.set(key, target)
		}
	case obs.Owner == "":
		p.AdoptInstance = true
		if dryRun {
			return nil
		}
		log.Info("adopting the instance (spec.instance.adopt): setting its owner key", "key", KeyLB)
		if err := a.Incus.UpdateConfig(ctx, in.Project, in.Name, map[string]string{KeyLB: lb.Metadata.Name}); err != nil {
			return err
		}
		obs.Owner = lb.Metadata.Name
		if obs.Instance.Config == nil {
			obs.Instance.Config = map[string]string{}
		}
		obs.Instance.Config[KeyLB] = lb.Metadata.Name
	}
	if obs.Exists() && !obs.Running() {
		p.StartInstance = true
		if dryRun {
			return nil
		}
		// Incus starts the proxy devices with the instance, and cannot when
		// their socket directory is gone (a host reboot wiped /run) or is not
		// this controller's (--socket-dir changed): point them here first.
		if a.Incus.Local() && a.Incus.LocalMember(ctx, obs.Instance.Location) {
			if err := a.ensureSockets(ctx, lb); err != nil {
				return err
			}
		}
		log.Info("starting LB instance", "status", obs.Instance.Status)
		if err := a.Incus.SetState(ctx, in.Project, in.Name, "start", false); err != nil {
			return err
		}
	}
	if p.CreateInstance || p.StartInstance {
		inst, err := a.waitForAddress(ctx, lb)
		if err != nil {
			return err
		}
		obs.Instance, obs.Owner = inst, lb.Metadata.Name
		p.Address = ownAddress(lb, inst)
		// systemctl needs a booted systemd; images without it skip this.
		_, _ = a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c",
			"command -v systemctl >/dev/null 2>&1 && systemctl is-system-running --wait >/dev/null 2>&1; true"}, nil)
		a.checked.remove(key)
	}
	if !a.Incus.LocalMember(ctx, obs.Instance.Location) {
		a.elsewhere.set(key, true)
	} else {
		a.elsewhere.remove(key)
	}
	// What a new, restarted or newly seen instance needs is checked once per
	// process, not on every pass; a master that stops answering clears it.
	if a.checked.has(key) {
		return nil
	}
	if err := a.ensureHAProxy(ctx, lb, p, dryRun); err != nil || dryRun {
		return err
	}
	if a.Incus.Local() && !a.elsewhere.has(key) {
		if err := a.ensureSockets(ctx, lb); err != nil {
			return err
		}
	}
	a.sweepTemps(ctx, lb)
	a.checked.set(key, true)
	return nil
}

func (a *Applier) waitForAddress(ctx context.Context, lb *specs.LoadBalancer) (*incus.Instance, error) {
	in := lb.Spec.Instance
	timeout := a.AddressTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		inst, err := a.Incus.GetInstance(ctx, in.Project, in.Name, true)
		if err != nil {
			return nil, err
		}
		if inst.IPv4(specs.DefaultNIC) != "" {
			return inst, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("instance %s/%s has no IPv4 address on %s after %v", in.Project, in.Name, specs.DefaultNIC, timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
}

// ensureHAProxy installs haproxy in the instance when its image lacks it.
func (a *Applier) ensureHAProxy(ctx context.Context, lb *specs.LoadBalancer, p *Plan, dryRun bool) error {
	in := lb.Spec.Instance
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"test", "-x", "/usr/sbin/haproxy"}, nil)
	if err != nil {
		return err
	}
	if res.Code == 0 {
		return nil
	}
	p.InstallHAProxy = true
	if dryRun {
		return nil
	}
	a.Log.Info("installing haproxy in the LB instance (its image lacks it)", "lb", lb.Metadata.Name)
	res, err = a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c", installScript("haproxy")}, nil)
	if err != nil {
		return err
	}
	if res.Code != 0 {
		return fmt.Errorf("installing haproxy in %s/%s failed (exit %d): %s", in.Project, in.Name, res.Code, tail(res.Output(), 5))
	}
	return nil
}

// Proxy devices that expose HAProxy's admin and master sockets on the host
// only (never on the network), mode 0600.
const (
	adminDevice  = "incuslb-admin"
	masterDevice = "incuslb-master"
)

// socketDir makes the host directory of the proxy devices' sockets.
func (a *Applier) socketDir() error {
	if !a.Incus.Local() {
		return nil
	}
	admin, _ := a.sockets(&specs.LoadBalancer{})
	return os.MkdirAll(filepath.Dir(admin), 0o700)
}

func (a *Applier) ensureSockets(ctx context.Context, lb *specs.LoadBalancer) error {
	in := lb.Spec.Instance
	admin, master := a.sockets(lb)
	if err := a.socketDir(); err != nil {
		return err
	}
	for _, dev := range []struct{ name, host, inside string }{
		{adminDevice, admin, haproxy.AdminSocket},
		{masterDevice, master, haproxy.MasterSocket},
	} {
		err := a.Incus.EnsureDevice(ctx, in.Project, in.Name, dev.name, map[string]string{
			"type": "proxy", "bind": "host", "mode": "0600",
			"listen": "unix:" + dev.host, "connect": "unix:" + dev.inside,
		})
		if err != nil {
			return fmt.Errorf("adding proxy device %s: %w", dev.name, err)
		}
	}
	return nil
}

// resetSockets removes and adds the proxy devices again, so that Incus
// makes their host-side sockets anew (after /run was wiped under a running
// instance, say).
func (a *Applier) resetSockets(ctx context.Context, lb *specs.LoadBalancer) error {
	in := lb.Spec.Instance
	for _, dev := range []string{adminDevice, masterDevice} {
		if err := a.Incus.RemoveDevice(ctx, in.Project, in.Name, dev); err != nil {
			return fmt.Errorf("removing proxy device %s: %w", dev, err)
		}
	}
	return a.ensureSockets(ctx, lb)
}

// sweepTemps removes the temporary files an earlier pass may have left
// (a controller killed while it staged a config or a key).
func (a *Applier) sweepTemps(ctx context.Context, lb *specs.LoadBalancer) {
	in := lb.Spec.Instance
	script := fmt.Sprintf("rm -f %s/.*.incuslb-* %s/.*.incuslb-*", filepath.Dir(haproxy.ConfigPath), haproxy.CertDir)
	if res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c", script}, nil); err != nil || res.Code != 0 {
		a.Log.Error(err, "sweeping temporary files", "lb", lb.Metadata.Name, "output", res.Output())
	}
}

// haproxyIDs reads the uid and gid of the haproxy user in the instance.
func (a *Applier) haproxyIDs(ctx context.Context, lb *specs.LoadBalancer) (uid, gid int64, err error) {
	in := lb.Spec.Instance
	passwd, err := a.Incus.ReadFile(ctx, in.Project, in.Name, "/etc/passwd")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 4 && f[0] == "haproxy" {
			uid, err1 := strconv.ParseInt(f[2], 10, 64)
			gid, err2 := strconv.ParseInt(f[3], 10, 64)
			if err1 == nil && err2 == nil {
				return uid, gid, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no haproxy user in %s/%s", in.Project, in.Name)
}
