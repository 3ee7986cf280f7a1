package main

import (
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// clusterFlags are the flags of every verb that talks to Incus.
type clusterFlags struct {
	remote    *string
	socketDir *string
	certRoot  *string
	stateDir  *string
	quiet     *bool
}

func addClusterFlags(fs *flag.FlagSet) clusterFlags {
	return clusterFlags{
		remote:    addRemoteFlag(fs),
		socketDir: addSocketDirFlag(fs),
		certRoot:  addCertRootFlag(fs, ""),
		stateDir:  addStateDirFlag(fs),
		quiet:     fs.Bool("q", false, "log only errors"),
	}
}

func (e *env) logger(quiet bool) logr.Logger {
	level := slog.LevelInfo
	if quiet {
		level = slog.LevelError
	}
	return logr.FromSlogHandler(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

func (e *env) applier(cf clusterFlags, root string) (*controller.Applier, error) {
	c, err := incus.Connect(e.ctx, *cf.remote)
	if err != nil {
		return nil, err
	}
	a := &controller.Applier{Incus: c, Log: e.logger(*cf.quiet), SocketDir: *cf.socketDir, CertRoot: root, StateDir: *cf.stateDir}
	// ACME certificates already held are served; only incuslb run orders.
	a.ACME = &controller.ACMEManager{StateDir: *cf.stateDir, CertRoot: root, Applier: a, Log: a.Log, ServeOnly: true}
	return a, nil
}

// specsAndApplier loads the specs of -f and connects to Incus, with the
// certificate root of both.
func (e *env) specsAndApplier(file string, cf clusterFlags) ([]*specs.LoadBalancer, *controller.Applier, error) {
	root, err := certRoot(*cf.certRoot, file)
	if err != nil {
		return nil, nil, err
	}
	lbs, err := e.loadSpecs(file, true, root)
	if err != nil {
		return nil, nil, err
	}
	a, err := e.applier(cf, root)
	return lbs, a, err
}

func (e *env) apply(args []string) error {
	fs := e.newFlags("apply", "apply -f FILE|DIR|- [--dry-run] [--remote NAME]")
	file := fs.String("f", "", "spec file, directory of specs, or - for stdin")
	dryRun := fs.Bool("dry-run", false, "print the plan and change nothing")
	force := fs.Bool("force", false, "apply even while an incuslb run holds the leader lease (it may undo the change)")
	cf := addClusterFlags(fs)
	lf := addLeaseFlags(fs, false)
	if err := parse(fs, args); err != nil {
		return err
	}
	lbs, a, err := e.specsAndApplier(*file, cf)
	if err != nil {
		return err
	}
	if !*dryRun {
		held, err := liveHolder(e.ctx, a.Incus.(*incus.Client), *lf.profile)
		if err != nil {
			return fmt.Errorf("reading the leader lease (--lease %q): %w", *lf.profile, err)
		}
		if held.Holder != "" && !*force {
			return fmt.Errorf("%s holds the leader lease (--lease %q, generation %d, renewed %s ago): an incuslb run manages these LoadBalancers and would undo a change made beside it; change its specs instead, or apply --force",
				held.Holder, *lf.profile, held.Generation, time.Since(held.Renewed).Truncate(time.Second))
		}
	}
	var failed []string
	for _, lb := range lbs {
		if err := e.converge(a, lb, *dryRun); err != nil {
			fmt.Fprintf(e.stderr, "%s: apply failed: %v\n", lb.Metadata.Name, err)
			failed = append(failed, lb.Metadata.Name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("apply failed for %s", strings.Join(failed, ", "))
	}
	return nil
}

// converge makes passes until one asks for no other (a drain finished, a
// member got its address), so that apply exits once the container runs
// the desired config; bounded by the drain timeout plus 30s.
func (e *env) converge(a *controller.Applier, lb *specs.LoadBalancer, dryRun bool) error {
	start := time.Now()
	deadline := start.Add(lb.Spec.Defaults.DrainTimeout.Duration + 30*time.Second)
	changed := false
	for {
		plan, err := a.Apply(e.ctx, lb, dryRun)
		if err != nil {
			return err
		}
		if plan.Changed() || !changed {
			printPlan(e, plan, dryRun)
		}
		changed = changed || plan.Changed()
		if dryRun || !plan.Converging() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still converging after %v (a member draining, or waiting for its address); run apply again or see incuslb status", time.Since(start).Truncate(time.Second))
		}
		select {
		case <-e.ctx.Done():
			return e.ctx.Err()
		case <-time.After(plan.RequeueAfter):
		}
	}
}

func printPlan(e *env, p *controller.Plan, dryRun bool) {
	verb := func(done, would string) string {
		if dryRun && !strings.HasPrefix(would, "would ") {
			return "would " + would
		}
		if dryRun {
			return would
		}
		return done
	}
	if len(p.Replicas) > 0 {
		printPair(e, p, dryRun)
		return
	}
	prefix := fmt.Sprintf("%s (%s)", p.LB, p.Instance)
	if !p.Changed() {
		fmt.Fprintf(e.stdout, "%s: unchanged\n", prefix)
		return
	}
	if p.CreateInstance {
		fmt.Fprintf(e.stdout, "%s: %s\n", prefix, verb("created the instance", "create the instance"))
	}
	if p.AdoptInstance {
		fmt.Fprintf(e.stdout, "%s: %s\n", prefix, verb("adopted the instance (spec.instance.adopt)", "adopt the instance (spec.instance.adopt)"))
	}
	if p.StartInstance {
		fmt.Fprintf(e.stdout, "%s: %s\n", prefix, verb("started the instance", "start the instance"))
	}
	if p.InstallHAProxy {
		fmt.Fprintf(e.stdout, "%s: %s\n", prefix, verb("installed haproxy", "install haproxy"))
	}
	if p.PushCert {
		fmt.Fprintf(e.stdout, "%s: %s\n", prefix, verb("pushed the certificate", "push the certificate"))
	}
	if p.ConfigDiff != "" {
		added, removed := countDiff(p.ConfigDiff)
		fmt.Fprintf(e.stdout, "%s: %s (+%d -%d lines)\n", prefix, verb("changed haproxy.cfg", "change haproxy.cfg"), added, removed)
		if dryRun {
			fmt.Fprint(e.stdout, p.ConfigDiff)
		}
	}
	for _, r := range p.Runtime {
		fmt.Fprintf(e.stdout, "%s: %s: %s\n", prefix, verb("runtime API, no reload", "would use the runtime API, no reload"), r)
	}
	switch {
	case p.StartHAProxy:
		fmt.Fprintf(e.stdout, "%s: %s (%s)\n", prefix, verb("started HAProxy", "start HAProxy"), p.ReloadDetail)
	case p.Reload != "":
		fmt.Fprintf(e.stdout, "%s: %s (%s)\n", prefix, verb("reloaded HAProxy", "reload HAProxy"), p.ReloadDetail)
	}
}

// printPair prints each replica's plan, then keepalived's changes and
// which replica holds the virtual address.
func printPair(e *env, p *controller.Plan, dryRun bool) {
	for _, r := range p.Replicas {
		printPlan(e, r, dryRun)
	}
	for _, v := range p.VRRP {
		fmt.Fprintf(e.stdout, "%s: keepalived: %s\n", p.LB, v)
	}
	if dryRun {
		return
	}
	holder := p.Holder
	if holder == "" {
		holder = "no replica yet (an election is under way)"
	}
	fmt.Fprintf(e.stdout, "%s: virtual address %s held by %s\n", p.LB, p.VirtualIP, holder)
}

func countDiff(d string) (added, removed int) {
	for _, l := range strings.Split(d, "\n") {
		switch {
		case strings.HasPrefix(l, "+++"), strings.HasPrefix(l, "---"):
		case strings.HasPrefix(l, "+"):
			added++
		case strings.HasPrefix(l, "-"):
			removed++
		}
	}
	return added, removed
}

// diffExitDifferent is diff's exit code when there is a difference; like
// kubectl diff, errors exit with more than 1.
const diffExitDifferent = 1

func (e *env) diff(args []string) error {
	fs := e.newFlags("diff", "diff -f FILE|DIR|- [--remote NAME]")
	file := fs.String("f", "", "spec file, directory of specs, or - for stdin")
	cf := addClusterFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	lbs, a, err := e.specsAndApplier(*file, cf)
	if err != nil {
		return asDiffError(err)
	}
	different := false
	for _, lb := range lbs {
		plan, err := a.Apply(e.ctx, lb, true)
		if err != nil {
			return asDiffError(err)
		}
		if plan.CreateInstance {
			fmt.Fprintf(e.stdout, "# %s: instance %s does not exist\n", lb.Metadata.Name, plan.Instance)
		}
		if plan.PushCert {
			fmt.Fprintf(e.stdout, "# %s: the certificate in the instance differs\n", lb.Metadata.Name)
		}
		fmt.Fprint(e.stdout, plan.ConfigDiff)
		different = different || plan.CreateInstance || plan.PushCert || plan.ConfigDiff != ""
	}
	if different {
		return &exitError{code: diffExitDifferent}
	}
	return nil
}

// asDiffError gives every failure of diff an exit code above 1.
func asDiffError(err error) error {
	if ee, ok := err.(*exitError); ok && ee.code > 1 {
		return err
	}
	return &exitError{code: 2, err: err}
}

// addRemoteFlag is -remote, the incus CLI remote of every verb that talks
// to Incus.
func addRemoteFlag(fs *flag.FlagSet) *string {
	return fs.String("remote", "", "incus CLI remote to use (default: the local unix socket)")
}

// addSocketDirFlag is -socket-dir, where the host ends of the LB
// instances' socket proxy devices are.
func addSocketDirFlag(fs *flag.FlagSet) *string {
	return fs.String("socket-dir", "/run/incuslb", "host directory of the HAProxy admin/master sockets of the LB instances (proxy devices)")
}
