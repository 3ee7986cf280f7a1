package main

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// instanceFlags are the flags of a verb that works on one LB's instance
// (stats, logs). socketDir and via are nil for a verb that always goes
// through exec (stats), which does not offer them.
type instanceFlags struct {
	remote    *string
	socketDir *string
	instance  *string
	via       *string
}

// addInstanceFlags adds -remote and -instance, and with runtime the flags
// that choose how the runtime API is reached (-socket-dir, -runtime-via).
func addInstanceFlags(fs *flag.FlagSet, runtime bool) instanceFlags {
	f := instanceFlags{
		remote:   addRemoteFlag(fs),
		instance: fs.String("instance", "", "of a pair's replicas, the one to use (default: the holder of the virtual address)"),
	}
	if runtime {
		f.socketDir = addSocketDirFlag(fs)
		f.via = fs.String("runtime-via", "auto", "reach HAProxy's runtime API through the host socket (auto) or through exec in the instance (exec)")
	}
	return f
}

// lbTarget is a running instance of a LoadBalancer and the routes into it.
type lbTarget struct {
	incus   *incus.Client
	inst    incus.Instance
	applier *controller.Applier
	lb      *specs.LoadBalancer
}

func (t lbTarget) String() string { return t.inst.Project + "/" + t.inst.Name }

// runtime is HAProxy's runtime API in the instance.
func (t lbTarget) runtime() *haproxy.Runtime { return t.applier.Runtime(t.lb) }

// findLB finds the running instance of LoadBalancer name, in any project:
// the one --instance names, else the replica that holds the pair's
// virtual address, else the first that runs.
func (e *env) findLB(f instanceFlags, name string) (lbTarget, error) {
	via, socketDir := "exec", ""
	if f.via != nil {
		via, socketDir = *f.via, *f.socketDir
	}
	if via != "auto" && via != "exec" {
		return lbTarget{}, usageErrorf("--runtime-via must be auto or exec")
	}
	c, err := incus.Connect(e.ctx, *f.remote)
	if err != nil {
		return lbTarget{}, err
	}
	insts, err := c.ListAllProjects(e.ctx, controller.KeyLB)
	if err != nil {
		return lbTarget{}, err
	}
	var mine []incus.Instance
	for _, in := range insts {
		if in.Config[controller.KeyLB] == name && (*f.instance == "" || in.Name == *f.instance) {
			mine = append(mine, in)
		}
	}
	if len(mine) == 0 {
		if *f.instance != "" {
			return lbTarget{}, fmt.Errorf("--instance %s: no instance of LoadBalancer %q has that name", *f.instance, name)
		}
		return lbTarget{}, fmt.Errorf("no LoadBalancer %q has an instance (apply it first)", name)
	}
	pick := -1
	for i, in := range mine {
		if !in.Running() {
			continue
		}
		if pick < 0 {
			pick = i
		}
		vip, err := netip.ParsePrefix(in.Config[controller.KeyVirtualIP])
		if err == nil && hasAddr(in, vip.Addr()) {
			pick = i
			break
		}
	}
	if pick < 0 {
		var names []string
		for _, in := range mine {
			names = append(names, in.Project+"/"+in.Name+" ("+in.Status+")")
		}
		return lbTarget{}, fmt.Errorf("no instance of LoadBalancer %q runs: %s", name, strings.Join(names, ", "))
	}
	in := mine[pick]
	lb := &specs.LoadBalancer{Metadata: specs.ObjectMeta{Name: name},
		Spec: specs.LoadBalancerSpec{Instance: specs.InstanceSpec{Name: in.Name, Project: in.Project}}}
	a := &controller.Applier{Incus: c, SocketDir: socketDir,
		ExecRuntime: via == "exec" || !c.LocalMember(e.ctx, in.Location)}
	return lbTarget{incus: c, inst: in, applier: a, lb: lb}, nil
}
