package main

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/keepalived"
)

// maintenance takes an LB instance out of service for planned work and
// puts it back. On: the instance is marked (controller.KeyMaintenance), so
// that the controller does not start it while it is stopped; a replica of
// a pair hands the virtual address to a healthy peer first (keepalived's
// handover flag), and the verb waits until the peer holds it. Off: the mark
// and the flag go; the controller starts the instance on its next pass if
// it is stopped, and it comes back as a backup.
func (e *env) maintenance(args []string) error {
	fs := e.newFlags("maintenance", "maintenance on|off INSTANCE [--project P] [--remote NAME] [--wait 10s]")
	project := fs.String("project", "default", "the instance's Incus project")
	remote := fs.String("remote", "", "incus CLI remote to use (default: the local unix socket)")
	wait := fs.Duration("wait", 10*time.Second, "how long `on` waits for a peer to take the virtual address")
	var mode, name string
	if err := parse(fs, args, &mode, &name); err != nil {
		return err
	}
	if (mode != "on" && mode != "off") || name == "" {
		return usageErrorf("maintenance: give on or off, then the instance's name")
	}
	c, err := incus.Connect(e.ctx, *remote)
	if err != nil {
		return err
	}
	inst, err := c.GetInstance(e.ctx, *project, name, true)
	if err != nil {
		return err
	}
	lb := inst.Config[controller.KeyLB]
	if lb == "" {
		return fmt.Errorf("instance %s/%s is not an incuslb LB instance (it has no %s key): left alone", *project, name, controller.KeyLB)
	}
	vip, _ := netip.ParsePrefix(inst.Config[controller.KeyVirtualIP])
	flag := func(v string) error {
		if !inst.Running() || !vip.IsValid() {
			return nil
		}
		res, err := c.Exec(e.ctx, *project, name, []string{"sh", "-c", "echo " + v + " >" + keepalived.HandoverFlag}, nil)
		if err == nil && res.Code != 0 {
			err = fmt.Errorf("exit %d: %s", res.Code, res.Output())
		}
		if err != nil {
			return fmt.Errorf("setting keepalived's handover flag in %s: %w", name, err)
		}
		return nil
	}
	if mode == "off" {
		if err := c.UpdateConfig(e.ctx, *project, name, map[string]string{controller.KeyMaintenance: ""}); err != nil {
			return err
		}
		if err := flag("0"); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s/%s: out of maintenance; the controller starts it if it is stopped, and it serves again (a replica comes back as a backup)\n", *project, name)
		return nil
	}
	if err := c.UpdateConfig(e.ctx, *project, name, map[string]string{controller.KeyMaintenance: "true"}); err != nil {
		return err
	}
	if err := flag("1"); err != nil {
		return err
	}
	if !vip.IsValid() || !inst.Running() {
		fmt.Fprintf(e.stdout, "%s/%s: in maintenance; the controller will not start it while it is stopped\n", *project, name)
		return nil
	}
	holder, err := awaitHandover(e, c, *project, name, lb, vip.Addr(), *wait)
	if err != nil {
		return err
	}
	// The new holder's first gratuitous ARPs may be ignored by a neighbour
	// that updated its entry for the address less than locktime (1 s on
	// Linux) before: the repeat it sends vrrp_garp_master_delay (1 s) later
	// is what moves every neighbour. Until then, stopping this replica
	// would lose what still comes to it.
	select {
	case <-e.ctx.Done():
		return e.ctx.Err()
	case <-time.After(garpSettle):
	}
	fmt.Fprintf(e.stdout, "%s/%s: in maintenance; the virtual address %s is on %s. Stop it or work on it; `incuslb maintenance off %s` puts it back\n",
		*project, name, vip.Addr(), holder, name)
	return nil
}

// garpSettle is how long after a handover every neighbour has the new
// holder's MAC address for the virtual address (see keepalived.Render:
// vrrp_garp_master_delay 1).
const garpSettle = 1200 * time.Millisecond

// awaitHandover waits until a replica of lb other than name holds vip, and
// name does not. It finds the replicas once (a list without state) and
// then reads only theirs, not every instance of the project.
func awaitHandover(e *env, c *incus.Client, project, name, lb string, vip netip.Addr, wait time.Duration) (string, error) {
	all, err := c.ListInstances(e.ctx, project, false)
	if err != nil {
		return "", err
	}
	var replicas []string
	for _, in := range all {
		if in.Config[controller.KeyLB] == lb {
			replicas = append(replicas, in.Name)
		}
	}
	deadline := time.Now().Add(wait)
	for {
		holder, self := "", false
		for _, r := range replicas {
			in, err := c.GetInstance(e.ctx, project, r, true)
			if err != nil || !hasAddr(*in, vip) {
				continue // a replica that cannot be read holds nothing we can see
			}
			if r == name {
				self = true
			} else {
				holder = r
			}
		}
		if holder != "" && !self {
			return holder, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s/%s is in maintenance, but after %v no healthy peer holds %s (is one running with HAProxy up?); it keeps the address meanwhile", project, name, wait, vip)
		}
		select {
		case <-e.ctx.Done():
			return "", e.ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func hasAddr(in incus.Instance, a netip.Addr) bool {
	for _, addrs := range in.Addresses {
		if slices.Contains(addrs, a.String()) {
			return true
		}
	}
	return false
}
