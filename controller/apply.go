package controller

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/internal/textdiff"
	"github.com/incuslb/incuslb/specs"
)

// Incus is what an Applier needs of Incus. *incus.Client satisfies it.
type Incus interface {
	GetInstance(ctx context.Context, project, name string) (*incus.Instance, error)
	CreateInstance(ctx context.Context, project, name, image string, profiles []string, config map[string]string) error
	SetState(ctx context.Context, project, name, action string, force bool) error
	UpdateConfig(ctx context.Context, project, name string, keys map[string]string) error
	EnsureDevice(ctx context.Context, project, name, device string, settings map[string]string) error
	ListInstances(ctx context.Context, project string, state bool) ([]incus.Instance, error)
	ReadFile(ctx context.Context, project, name, file string) ([]byte, error)
	WriteFile(ctx context.Context, project, name, file string, data []byte, mode incus.FileMode) error
	WriteTemp(ctx context.Context, project, name, file string, data []byte, mode incus.FileMode) (string, error)
	Rename(ctx context.Context, project, name, from, to string) error
	Remove(ctx context.Context, project, name, file string) error
	Mkdir(ctx context.Context, project, name, dir string, mode incus.FileMode) error
	Exec(ctx context.Context, project, name string, argv []string, stdin []byte) (incus.ExecResult, error)
	DeleteInstance(ctx context.Context, project, name string) error
	Local() bool
	LocalMember(location string) bool
}

// Applier makes one reconcile pass for a LoadBalancer.
type Applier struct {
	Incus Incus
	Log   logr.Logger
	// SocketDir is the host directory for the unix sockets of the proxy
	// devices that reach HAProxy's admin and master sockets. Default
	// /run/incuslb.
	SocketDir string
	// Now is the clock; default time.Now.
	Now func() time.Time
	// AddressTimeout bounds the wait for a new LB instance's address.
	AddressTimeout time.Duration
	// Metrics, when set, counts reloads and runtime updates.
	Metrics *Metrics
	// ExecRuntime reaches HAProxy's sockets through exec even when the
	// host-side sockets would do (for tests of that path).
	ExecRuntime bool
	// ForceReload applies every change with a reload, never through the
	// runtime API: the seed role's way, kept to compare against (make bench).
	ForceReload bool

	drainingSince lockedMap[time.Time] // draining members, by lb/pool/address:port
	checked       lockedMap[bool]      // instances known to have haproxy and the proxy devices
	elsewhere     lockedMap[bool]      // LB instances on another cluster member than this host
	fullListAt    lockedMap[time.Time] // when each LB last listed its members with their state
}

// lockedMap is a map safe for concurrent use; its zero value is empty.
type lockedMap[V any] struct {
	mu sync.Mutex
	m  map[string]V
}

func (l *lockedMap[V]) get(key string) (V, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	v, ok := l.m[key]
	return v, ok
}

func (l *lockedMap[V]) has(key string) bool {
	_, ok := l.get(key)
	return ok
}

func (l *lockedMap[V]) set(key string, v V) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]V{}
	}
	l.m[key] = v
}

// setIfAbsent stores v unless key has a value, and returns the value.
func (l *lockedMap[V]) setIfAbsent(key string, v V) V {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.m[key]; ok {
		return old
	}
	if l.m == nil {
		l.m = map[string]V{}
	}
	l.m[key] = v
	return v
}

func (l *lockedMap[V]) remove(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}

// Plan says what a pass did, or would do with DryRun.
type Plan struct {
	LB             string
	Instance       string // project/name
	Address        string // the LB instance's IPv4 address, once known
	CreateInstance bool
	StartInstance  bool
	InstallHAProxy bool
	PushCert       bool
	ConfigDiff     string   // unified diff, running -> desired; "" when equal
	Reload         string   // why HAProxy must reload; "" for no reload
	StartHAProxy   bool     // HAProxy was not running
	Runtime        []string // changes made through the runtime API
	// RequeueAfter asks for another pass soon: a member waits for its
	// address, or drains.
	RequeueAfter time.Duration
}

// Changed reports whether the pass changes anything.
func (p *Plan) Changed() bool {
	return p.CreateInstance || p.StartInstance || p.InstallHAProxy || p.StartHAProxy || p.PushCert ||
		p.ConfigDiff != "" || p.Reload != "" || len(p.Runtime) > 0
}

// Paths of the proxy-device sockets on the host for an LB instance.
func (a *Applier) sockets(lb *specs.LoadBalancer) (admin, master string) {
	dir := a.SocketDir
	if dir == "" {
		dir = "/run/incuslb"
	}
	base := filepath.Join(dir, lb.Spec.Instance.Project+"_"+lb.Spec.Instance.Name)
	return base + ".admin.sock", base + ".master.sock"
}

// Runtime returns the runtime API of the LB's HAProxy: through the proxy
// devices' sockets on this host (0.2 ms a round trip) when the instance
// runs here, else through exec in the instance (the instance is on another
// cluster member, Incus is remote, or ExecRuntime is set).
func (a *Applier) Runtime(lb *specs.LoadBalancer) *haproxy.Runtime {
	in := lb.Spec.Instance
	if a.Incus.Local() && !a.ExecRuntime && !a.elsewhere.has(in.Project+"/"+in.Name) {
		admin, master := a.sockets(lb)
		return &haproxy.Runtime{Admin: haproxy.UnixDialer(admin), Master: haproxy.UnixDialer(master)}
	}
	run := func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
		res, err := a.Incus.Exec(ctx, in.Project, in.Name, argv, stdin)
		if err != nil {
			return nil, err
		}
		if res.Code != 0 {
			return res.Stdout, fmt.Errorf("exit %d: %s", res.Code, strings.TrimSpace(string(res.Stderr)))
		}
		return res.Stdout, nil
	}
	return &haproxy.Runtime{
		Admin:  haproxy.ExecSocket{Path: haproxy.AdminSocket, Run: run},
		Master: haproxy.ExecSocket{Path: haproxy.MasterSocket, Run: run},
	}
}

func (a *Applier) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Apply makes one pass for lb, which must be defaulted and valid (files
// included). With dryRun it changes nothing and only plans. On error,
// whatever HAProxy ran before keeps running, with the config it had.
//
// A change of membership only (or of the certificate only) goes through
// HAProxy's runtime API, and the file in the container is rewritten to
// match without a reload; members that leave while they still run are
// drained first. Anything else is a structural change: validated and
// reloaded.
func (a *Applier) Apply(ctx context.Context, lb *specs.LoadBalancer, dryRun bool) (*Plan, error) {
	in := lb.Spec.Instance
	log := a.Log.WithValues("lb", lb.Metadata.Name, "instance", in.Project+"/"+in.Name)
	plan := &Plan{LB: lb.Metadata.Name, Instance: in.Project + "/" + in.Name}

	cert, err := loadCert(lb)
	if err != nil {
		return plan, err
	}
	specHash := SpecHash(lb, cert)

	// The running config comes first: discovery takes the addresses of
	// running members from it. Files are read only from a running instance:
	// Incus serves files of a stopped one through a file server that then
	// keeps its rootfs busy, and an `incus delete` of it hangs. When
	// HAProxy's master answers, the instance runs, and the instance check
	// can go on beside the reads; otherwise it comes first.
	var (
		inst                 *incus.Instance
		running, runningCert []byte
		instErr, readErr     error
	)
	read := func() {
		if running, readErr = a.readOptional(ctx, lb, haproxy.ConfigPath); readErr == nil && cert != nil {
			runningCert, readErr = a.readOptional(ctx, lb, haproxy.CertPath(lb, haproxy.Options{}))
		}
	}
	// The hot path: HAProxy's master answers, so the instance runs and was
	// checked before; the instance itself is read after the change, for the
	// status only.
	rt := a.Runtime(lb)
	hot := !dryRun && rt != nil && a.checked.has(in.Project+"/"+in.Name) && answers(ctx, rt)
	if hot {
		read()
	} else {
		inst, instErr = a.ensureInstance(ctx, lb, plan, dryRun)
		if instErr == nil && inst != nil && inst.Running() && !plan.CreateInstance {
			read()
		}
	}
	if instErr != nil {
		return plan, a.fail(ctx, lb, specHash, "InstanceNotReady", instErr)
	}
	if readErr != nil {
		return plan, a.fail(ctx, lb, specHash, "ReadFailed", readErr)
	}
	pools := selectorPools(lb)
	prev := haproxy.ParseLayout(running, pools)
	disc, err := a.discover(ctx, lb, prev)
	if err != nil {
		return plan, a.fail(ctx, lb, specHash, "DiscoveryFailed", err)
	}
	if !hot {
		rt = nil
		if inst != nil {
			plan.Address = inst.IPv4(specs.DefaultNIC)
			rt = a.Runtime(lb)
			if err := a.ensureRunning(ctx, lb, rt, plan, dryRun); err != nil {
				return plan, a.fail(ctx, lb, specHash, "HAProxyNotRunning", err)
			}
		}
	}
	members := disc.members
	if disc.waiting > 0 {
		plan.RequeueAfter = addressPoll
	}
	plan.PushCert = cert != nil && !bytes.Equal(cert, runningCert)

	// The live slots, when HAProxy's runtime API answers: the runtime path
	// needs them, and only a config incuslb wrote has the same structure.
	var live map[string][]haproxy.ServerState
	if rt != nil && running != nil && !plan.StartHAProxy {
		live, _ = liveLayout(ctx, rt, pools)
	}
	draining := map[string]bool{}
	if live != nil && !a.ForceReload {
		leavers := a.leavers(lb, prev, disc)
		if a.settleDrains(ctx, rt, lb, leavers, live, members, draining) {
			plan.RequeueAfter = drainPoll
		}
	}
	layout := haproxy.Assign(lb, members, prev)
	desired := haproxy.Render(lb, layout, haproxy.Options{})
	plan.ConfigDiff = textdiff.Unified("running "+haproxy.ConfigPath, "desired", running, desired)

	runtimePath := !a.ForceReload && live != nil && running != nil &&
		bytes.Equal(haproxy.Structure(running, pools), haproxy.Structure(desired, pools))
	if hot && !runtimePath {
		// A reload coming: read the instance now (the reason needs its status).
		if inst, err = a.Incus.GetInstance(ctx, in.Project, in.Name); err != nil {
			return plan, a.fail(ctx, lb, specHash, "InstanceNotReady", err)
		}
	}
	if !runtimePath {
		plan.Reload = reloadReason(lb, running, desired, prev, layout, plan, inst, specHash)
	}
	if dryRun {
		if runtimePath && (plan.ConfigDiff != "" || plan.PushCert) {
			plan.Runtime = append(plan.Runtime, "membership or certificate through the runtime API, no reload")
		}
		return plan, nil
	}

	if runtimePath {
		if err := a.applyLive(ctx, rt, lb, layout, live, draining, running, desired, cert, plan, log); err != nil {
			return plan, a.fail(ctx, lb, specHash, "RuntimeUpdateFailed", err)
		}
	} else if plan.Reload != "" {
		st := stage{lb: lb, running: running, desired: desired, runningCert: runningCert}
		if plan.PushCert {
			st.cert = cert
		}
		if err := a.applyStaged(ctx, &st, plan.ConfigDiff != "", plan.Reload, log); err != nil {
			return plan, a.fail(ctx, lb, specHash, "ApplyFailed", err)
		}
		a.Metrics.reload(lb.Metadata.Name, plan.Reload)
	}
	if inst == nil {
		if inst, err = a.Incus.GetInstance(ctx, in.Project, in.Name); err != nil {
			return plan, err
		}
		plan.Address = inst.IPv4(specs.DefaultNIC)
	}
	if err := a.record(ctx, lb, inst, specHash, hash(desired), plan); err != nil {
		return plan, err
	}
	return plan, nil
}

// addressPoll is how soon to look again for a member that runs but has no
// DHCP address yet (no event announces the address; it shows up 0.5-1 s
// after the start).
const addressPoll = 100 * time.Millisecond

// answers reports whether HAProxy's master answers on its socket.
func answers(ctx context.Context, rt *haproxy.Runtime) bool {
	_, err := rt.ShowProc(ctx)
	return err == nil
}

// applyLive makes the membership and certificate changes through the
// runtime API, then brings the files in the container up to date without a
// reload, so that a later reload keeps every member.
func (a *Applier) applyLive(ctx context.Context, rt *haproxy.Runtime, lb *specs.LoadBalancer, layout haproxy.Layout,
	live map[string][]haproxy.ServerState, draining map[string]bool, running, desired, cert []byte, plan *Plan, log logr.Logger) error {
	in := lb.Spec.Instance
	changes, err := a.applyRuntime(ctx, rt, lb, layout, live, draining)
	for _, c := range changes {
		plan.Runtime = append(plan.Runtime, c.desc)
		a.Metrics.runtimeUpdate(lb.Metadata.Name, c.kind)
		log.Info("runtime update", "kind", c.kind, "change", c.desc)
	}
	if err != nil {
		return err
	}
	if plan.PushCert {
		path := haproxy.CertPath(lb, haproxy.Options{})
		if err := rt.SetCert(ctx, path, cert); err != nil {
			return fmt.Errorf("HAProxy refused the new certificate; the old one keeps serving: %w", err)
		}
		uid, gid, err := a.haproxyIDs(ctx, lb)
		if err != nil {
			return err
		}
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, path, cert, incus.FileMode{UID: uid, GID: gid, Mode: 0o600}); err != nil {
			return err
		}
		plan.Runtime = append(plan.Runtime, "certificate swapped (set ssl cert + commit)")
		a.Metrics.runtimeUpdate(lb.Metadata.Name, "certificate")
		log.Info("runtime update", "kind", "certificate", "path", path)
	}
	if !bytes.Equal(running, desired) {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ConfigPath, desired, incus.FileMode{UID: 0, GID: 0, Mode: 0o644}); err != nil {
			return err
		}
	}
	return nil
}

// reloadReason says why a reload is needed, or "" when nothing changed.
func reloadReason(lb *specs.LoadBalancer, running, desired []byte, prev, layout haproxy.Layout, plan *Plan, inst *incus.Instance, specHash string) string {
	configChanged := !bytes.Equal(running, desired)
	switch {
	case !configChanged && !plan.PushCert:
		if plan.InstallHAProxy {
			return "haproxy installed"
		}
		return ""
	case running == nil || !strings.Contains(string(running), "written by incuslb"):
		return "first config"
	}
	for pool, slots := range layout {
		if len(slots) > len(prev[pool]) && len(prev[pool]) > 0 {
			return "pool " + pool + " ran out of slots"
		}
	}
	if configChanged && inst != nil && StatusFromConfig(inst.Config).SpecHash == specHash {
		return "config in the container drifted from the spec"
	}
	switch {
	case configChanged && plan.PushCert:
		return "config and certificate changed"
	case configChanged:
		return "config changed"
	}
	return "certificate changed (runtime API unavailable)"
}

// SpecHash identifies a spec and certificate: it changes exactly when
// either does.
func SpecHash(lb *specs.LoadBalancer, cert []byte) string {
	b, _ := json.Marshal(struct {
		Name string
		Spec specs.LoadBalancerSpec
		Cert string
	}{lb.Metadata.Name, lb.Spec, hash(cert)})
	return hash(b)
}

func hash(b []byte) string {
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func loadCert(lb *specs.LoadBalancer) ([]byte, error) {
	t := lb.Spec.Frontend.TLS
	if t == nil {
		return nil, nil
	}
	cert, err := specs.LoadCertificate(t.CertificateFile)
	if err != nil {
		return nil, specs.ErrorList{{Source: lb.Source, Path: "spec.frontend.tls.certificateFile", Reason: err.Error()}}
	}
	return cert, nil
}

func selectorPools(lb *specs.LoadBalancer) map[string]bool {
	out := map[string]bool{}
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) > 0 {
			out[p.Name] = true
		}
	}
	return out
}

// discovery is what one look at Incus found.
type discovery struct {
	members map[string][]haproxy.Member // by pool
	waiting int                         // selected, running, no address yet
	seen    map[string]incus.Instance   // every listed instance, by project/name
}

// fullListEvery bounds how long discovery may take the addresses of
// running members from the running config instead of from Incus.
const fullListEvery = time.Minute

// discover lists the members of every selector pool: running instances
// matching the selector with a global IPv4 address on the pool's NIC. It
// makes one list call per project, however many pools and instances there
// are, and lists the whole project (leavers are looked up in it).
//
// Listing with state makes the server compute every instance's addresses,
// which dominates a pass. So most passes list without state, take the
// address of a member that still runs from prev (the running config), and
// ask Incus only for newcomers' addresses; at least every fullListEvery (and
// on the first pass) the addresses all come from Incus, which catches an
// address that changed under a running instance.
func (a *Applier) discover(ctx context.Context, lb *specs.LoadBalancer, prev haproxy.Layout) (*discovery, error) {
	byProject := map[string][]*specs.Pool{}
	var projects []string
	for i := range lb.Spec.Pools {
		p := &lb.Spec.Pools[i]
		if len(p.Selector) == 0 {
			continue
		}
		if _, ok := byProject[p.Project]; !ok {
			projects = append(projects, p.Project)
		}
		byProject[p.Project] = append(byProject[p.Project], p)
	}
	last, listed := a.fullListAt.get(lb.Metadata.Name)
	full := !listed || a.now().Sub(last) >= fullListEvery
	d := &discovery{members: map[string][]haproxy.Member{}, seen: map[string]incus.Instance{}}
	for _, project := range projects {
		pools := byProject[project]
		insts, err := a.Incus.ListInstances(ctx, project, full)
		if err != nil {
			return nil, fmt.Errorf("pool %s: %w", pools[0].Name, err)
		}
		if !full {
			if insts, err = a.addresses(ctx, project, insts, pools, prev); err != nil {
				return nil, err
			}
		}
		for _, inst := range insts {
			d.seen[project+"/"+inst.Name] = inst
		}
		for _, p := range pools {
			for _, inst := range insts {
				if !matches(inst.Config, p.Selector) ||
					(inst.Name == lb.Spec.Instance.Name && inst.Project == lb.Spec.Instance.Project) {
					continue
				}
				addr := inst.IPv4(p.NIC)
				if inst.Running() && addr == "" {
					d.waiting++
				}
				if !inst.Running() || addr == "" || inst.Config[DrainKey] == "true" {
					continue
				}
				d.members[p.Name] = append(d.members[p.Name], haproxy.Member{Name: inst.Name, Address: addr})
			}
		}
	}
	if full {
		a.fullListAt.set(lb.Metadata.Name, a.now())
	}
	return d, nil
}

// addresses fills in the addresses of the running instances that pools
// select, and of the running members of prev (a member that lost its label
// is drained, which needs its address): from prev for a member already in
// a slot, from Incus (in parallel) for the others.
func (a *Applier) addresses(ctx context.Context, project string, insts []incus.Instance, pools []*specs.Pool, prev haproxy.Layout) ([]incus.Instance, error) {
	known := map[string]string{} // member -> address in the running config
	for _, p := range pools {
		for _, s := range prev[p.Name] {
			if !s.Parked() {
				known[s.Member] = s.Address
			}
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(insts))
	for i := range insts {
		inst := &insts[i]
		selected := false
		for _, p := range pools {
			selected = selected || matches(inst.Config, p.Selector)
		}
		addr, isMember := known[inst.Name]
		if !inst.Running() || (!selected && !isMember) {
			continue
		}
		if isMember {
			nics := map[string][]string{}
			for _, p := range pools {
				nics[p.NIC] = []string{addr}
			}
			inst.Addresses = nics
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			got, err := a.Incus.GetInstance(ctx, project, insts[i].Name)
			if errors.Is(err, incus.ErrNotFound) {
				return // deleted meanwhile
			}
			if err != nil {
				errs[i] = err
				return
			}
			insts[i] = *got
		}(i)
	}
	wg.Wait()
	return insts, errors.Join(errs...)
}

func matches(config, selector map[string]string) bool {
	for k, v := range selector {
		if config[k] != v {
			return false
		}
	}
	return true
}

// DrainKey, set to "true" on a member instance, takes it out of its pools
// gracefully.
const DrainKey = "user.incuslb.drain"

func (a *Applier) readOptional(ctx context.Context, lb *specs.LoadBalancer, file string) ([]byte, error) {
	in := lb.Spec.Instance
	data, err := a.Incus.ReadFile(ctx, in.Project, in.Name, file)
	if errors.Is(err, incus.ErrNotFound) {
		return nil, nil
	}
	return data, err
}

// ensureInstance makes the LB instance exist, run, have an address and
// have haproxy. With dryRun it only fills the plan; it returns nil when the
// instance does not exist yet.
func (a *Applier) ensureInstance(ctx context.Context, lb *specs.LoadBalancer, plan *Plan, dryRun bool) (*incus.Instance, error) {
	in := lb.Spec.Instance
	inst, err := a.Incus.GetInstance(ctx, in.Project, in.Name)
	switch {
	case errors.Is(err, incus.ErrNotFound):
		plan.CreateInstance = true
		if dryRun {
			return nil, nil
		}
		a.Log.Info("creating LB instance", "lb", lb.Metadata.Name, "instance", in.Project+"/"+in.Name, "image", in.Image)
		if err := a.Incus.CreateInstance(ctx, in.Project, in.Name, in.Image, in.Profiles,
			map[string]string{KeyLB: lb.Metadata.Name}); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, err
	case !inst.Running():
		plan.StartInstance = true
		if dryRun {
			return inst, nil
		}
		a.Log.Info("starting LB instance", "lb", lb.Metadata.Name, "instance", in.Project+"/"+in.Name, "status", inst.Status)
		if err := a.Incus.SetState(ctx, in.Project, in.Name, "start", false); err != nil {
			return nil, err
		}
	}
	if owner := configOf(inst)[KeyLB]; owner != "" && owner != lb.Metadata.Name {
		return nil, fmt.Errorf("instance %s/%s belongs to LoadBalancer %q", in.Project, in.Name, owner)
	}
	if plan.CreateInstance || plan.StartInstance {
		if inst, err = a.waitForAddress(ctx, lb); err != nil {
			return nil, err
		}
		// systemctl needs a booted systemd.
		_, _ = a.Incus.Exec(ctx, in.Project, in.Name, []string{"systemctl", "is-system-running", "--wait"}, nil)
	}
	// What a new or restarted instance needs is checked once, not on every
	// pass: ensureRunning looks again when HAProxy stops answering.
	key := in.Project + "/" + in.Name
	if inst != nil && !a.Incus.LocalMember(inst.Location) {
		a.elsewhere.set(key, true)
	} else {
		a.elsewhere.remove(key)
	}
	if plan.CreateInstance || plan.StartInstance || !a.checked.has(key) {
		if err := a.ensureHAProxy(ctx, lb, plan, dryRun); err != nil {
			return nil, err
		}
		if !dryRun && a.Incus.Local() && !a.elsewhere.has(key) {
			if err := a.ensureSockets(ctx, lb); err != nil {
				return nil, err
			}
		}
		if !dryRun {
			a.checked.set(key, true)
		}
	}
	return inst, nil
}

func configOf(inst *incus.Instance) map[string]string {
	if inst == nil {
		return nil
	}
	return inst.Config
}

func (a *Applier) waitForAddress(ctx context.Context, lb *specs.LoadBalancer) (*incus.Instance, error) {
	in := lb.Spec.Instance
	timeout := a.AddressTimeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	for delay := 100 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		inst, err := a.Incus.GetInstance(ctx, in.Project, in.Name)
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
func (a *Applier) ensureHAProxy(ctx context.Context, lb *specs.LoadBalancer, plan *Plan, dryRun bool) error {
	in := lb.Spec.Instance
	if plan.CreateInstance && dryRun {
		return nil
	}
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"test", "-x", "/usr/sbin/haproxy"}, nil)
	if err != nil {
		return err
	}
	if res.Code == 0 {
		return nil
	}
	plan.InstallHAProxy = true
	if dryRun {
		return nil
	}
	a.Log.Info("installing haproxy in the LB instance (its image lacks it)", "lb", lb.Metadata.Name)
	res, err = a.Incus.Exec(ctx, in.Project, in.Name, []string{"sh", "-c",
		"apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy procps"}, nil)
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

func (a *Applier) ensureSockets(ctx context.Context, lb *specs.LoadBalancer) error {
	in := lb.Spec.Instance
	admin, master := a.sockets(lb)
	if err := os.MkdirAll(filepath.Dir(admin), 0o700); err != nil {
		return err
	}
	for dev, pair := range map[string][2]string{
		adminDevice:  {admin, haproxy.AdminSocket},
		masterDevice: {master, haproxy.MasterSocket},
	} {
		err := a.Incus.EnsureDevice(ctx, in.Project, in.Name, dev, map[string]string{
			"type": "proxy", "bind": "host", "mode": "0600",
			"listen": "unix:" + pair[0], "connect": "unix:" + pair[1],
		})
		if err != nil {
			return fmt.Errorf("adding proxy device %s: %w", dev, err)
		}
	}
	return nil
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

// stage is one change to apply: the files as they run and as desired.
type stage struct {
	lb                   *specs.LoadBalancer
	running, desired     []byte
	runningCert, cert    []byte // cert is nil when it does not change
	certTmp, cfgTmp      string
	checkTmp             string
	uid, gid             int64
	certSwapped, swapped bool
}

// applyStaged writes every changed file under a temporary name, has HAProxy
// check the new config against the new certificate, renames both into
// place and reloads, confirming through the master socket that the reload
// took. If anything fails before the renames, nothing on disk changed; if
// the reload fails, the previous files are put back. Either way the running
// HAProxy keeps serving what it served.
func (a *Applier) applyStaged(ctx context.Context, st *stage, configChanged bool, reason string, log logr.Logger) error {
	in := st.lb.Spec.Instance
	certPath := haproxy.CertPath(st.lb, haproxy.Options{})
	defer a.removeTemps(ctx, st)
	if st.cert != nil {
		var err error
		if st.uid, st.gid, err = a.haproxyIDs(ctx, st.lb); err != nil {
			return err
		}
		if err := a.Incus.Mkdir(ctx, in.Project, in.Name, haproxy.CertDir, incus.FileMode{UID: 0, GID: st.gid, Mode: 0o750}); err != nil {
			return err
		}
		if st.certTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, certPath, st.cert, incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o600}); err != nil {
			return err
		}
	}
	rootFile := incus.FileMode{UID: 0, GID: 0, Mode: 0o644}
	if configChanged {
		var err error
		if st.cfgTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, haproxy.ConfigPath, st.desired, rootFile); err != nil {
			return err
		}
	}
	// The config HAProxy checks is the desired one, reading the staged
	// certificate when there is one.
	check := st.cfgTmp
	if st.certTmp != "" {
		var err error
		checkCfg := bytes.ReplaceAll(st.desired, []byte(" crt "+certPath+" "), []byte(" crt "+st.certTmp+" "))
		if st.checkTmp, err = a.Incus.WriteTemp(ctx, in.Project, in.Name, haproxy.ConfigPath, checkCfg, rootFile); err != nil {
			return err
		}
		check = st.checkTmp
	}
	if check != "" {
		res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"haproxy", "-c", "-f", check}, nil)
		if err != nil {
			return err
		}
		if res.Code != 0 {
			out := strings.ReplaceAll(res.Output(), st.certTmp, certPath)
			return fmt.Errorf("HAProxy rejects the new config; nothing was changed and the running config keeps serving:\n%s", alerts(out, check))
		}
	}
	if st.certTmp != "" {
		if err := a.Incus.Rename(ctx, in.Project, in.Name, st.certTmp, certPath); err != nil {
			return err
		}
		st.certTmp, st.certSwapped = "", true
	}
	if st.cfgTmp != "" {
		if err := a.Incus.Rename(ctx, in.Project, in.Name, st.cfgTmp, haproxy.ConfigPath); err != nil {
			return a.rollback(ctx, st, err)
		}
		st.cfgTmp, st.swapped = "", true
	}

	rt := a.Runtime(st.lb)
	var before *haproxy.Processes
	if rt != nil {
		if p, err := rt.ShowProc(ctx); err == nil {
			before = &p
		}
	}
	log.Info("reloading HAProxy", "reason", reason)
	res, err := a.Incus.Exec(ctx, in.Project, in.Name, []string{"systemctl", "reload-or-restart", "haproxy"}, nil)
	if err != nil {
		return a.rollback(ctx, st, err)
	}
	if res.Code != 0 {
		return a.rollback(ctx, st, fmt.Errorf("systemctl reload-or-restart haproxy failed (exit %d): %s", res.Code, tail(res.Output(), 5)))
	}
	if rt == nil {
		return nil // remote Incus: no host-side socket to confirm through
	}
	if err := confirmReload(ctx, rt, before); err != nil {
		return a.rollback(ctx, st, err)
	}
	return nil
}

// rollback puts back the files a failed change replaced.
func (a *Applier) rollback(ctx context.Context, st *stage, cause error) error {
	in := st.lb.Spec.Instance
	var failed []string
	if st.swapped && st.running != nil {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ConfigPath, st.running, incus.FileMode{UID: 0, GID: 0, Mode: 0o644}); err != nil {
			failed = append(failed, "config: "+err.Error())
		}
	}
	if st.certSwapped && st.runningCert != nil {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.CertPath(st.lb, haproxy.Options{}), st.runningCert,
			incus.FileMode{UID: st.uid, GID: st.gid, Mode: 0o600}); err != nil {
			failed = append(failed, "certificate: "+err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w (and putting the previous files back failed: %s)", cause, strings.Join(failed, "; "))
	}
	if st.swapped || st.certSwapped {
		return fmt.Errorf("%w; the previous files were put back", cause)
	}
	return cause
}

func (a *Applier) removeTemps(ctx context.Context, st *stage) {
	in := st.lb.Spec.Instance
	for _, tmp := range []string{st.certTmp, st.cfgTmp, st.checkTmp} {
		if tmp != "" {
			if err := a.Incus.Remove(ctx, in.Project, in.Name, tmp); err != nil {
				a.Log.Error(err, "removing a temporary file", "path", tmp)
			}
		}
	}
}

// confirmReload waits until the master reports a reload (or a new master)
// after before, and fails if that reload failed.
func confirmReload(ctx context.Context, rt *haproxy.Runtime, before *haproxy.Processes) error {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for {
		p, err := rt.ShowProc(ctx)
		switch {
		case err != nil:
			last = err
		case before != nil && p.MasterPID == before.MasterPID && p.Reloads == before.Reloads:
			last = errors.New("the master has not reloaded yet")
		case p.Failed > 0:
			return fmt.Errorf("HAProxy failed to load the new config (master reports %d failed reload(s)); the old worker keeps serving; see journalctl -u haproxy in the container", p.Failed)
		case len(p.Workers) == 0:
			last = errors.New("no worker yet")
		default:
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("could not confirm the reload through the master socket: %v", last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// alerts keeps the lines of haproxy -c output worth showing, with the
// temporary file name replaced by the real one.
func alerts(out, tmp string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "[ALERT]") || strings.Contains(l, "[WARNING]") {
			keep = append(keep, strings.ReplaceAll(l, tmp, haproxy.ConfigPath))
		}
	}
	if len(keep) == 0 {
		return tail(out, 10)
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// record writes the status after a successful pass. An unchanged pass
// rewrites nothing unless the status itself must change.
func (a *Applier) record(ctx context.Context, lb *specs.LoadBalancer, inst *incus.Instance, specHash, configHash string, plan *Plan) error {
	changed := plan.Changed()
	old := StatusFromConfig(inst.Config)
	st := old.Clone()
	st.LB, st.Source, st.Revision, st.ConfigHash = lb.Metadata.Name, lb.Source, lb.Revision, configHash
	if st.SpecHash != specHash {
		st.SpecHash = specHash
		st.Generation++
	}
	now := a.now()
	if changed || st.AppliedAt.IsZero() {
		st.AppliedAt = now.UTC().Truncate(time.Second)
	}
	st.SetCondition(Condition{Type: ConditionReady, Status: "True", Reason: "Applied",
		Message: "HAProxy runs the desired config", ObservedGeneration: st.Generation}, now)
	st.SetCondition(Condition{Type: ConditionDegraded, Status: "False", Reason: "Applied", ObservedGeneration: st.Generation}, now)
	progressing := Condition{Type: ConditionProgressing, Status: "False", Reason: "Converged", ObservedGeneration: st.Generation}
	switch {
	case plan.RequeueAfter == drainPoll:
		progressing.Status, progressing.Reason, progressing.Message = "True", "Draining", "a leaving member is draining"
	case plan.RequeueAfter > 0:
		progressing.Status, progressing.Reason, progressing.Message = "True", "WaitingForAddress", "a selected instance runs but has no address yet"
	}
	st.SetCondition(progressing, now)
	if c := st.Condition(ConditionOrphaned); c != nil && c.Status == "True" {
		st.SetCondition(Condition{Type: ConditionOrphaned, Status: "False", Reason: "InSpecs", ObservedGeneration: st.Generation}, now)
	}
	return a.writeStatus(ctx, lb, old, st)
}

func (a *Applier) writeStatus(ctx context.Context, lb *specs.LoadBalancer, old, st Status) error {
	oldKeys, newKeys := old.Keys(), st.Keys()
	diff := map[string]string{}
	for k, v := range newKeys {
		if oldKeys[k] != v {
			diff[k] = v
		}
	}
	if len(diff) == 0 {
		return nil
	}
	in := lb.Spec.Instance
	return a.Incus.UpdateConfig(ctx, in.Project, in.Name, diff)
}

// fail records a failed pass as Degraded (when the instance exists) and
// returns err. The config that runs is left alone.
func (a *Applier) fail(ctx context.Context, lb *specs.LoadBalancer, specHash, reason string, err error) error {
	in := lb.Spec.Instance
	inst, gerr := a.Incus.GetInstance(ctx, in.Project, in.Name)
	if gerr != nil {
		return err
	}
	old := StatusFromConfig(inst.Config)
	st := old.Clone()
	st.LB = lb.Metadata.Name
	now := a.now()
	msg := err.Error()
	if lb.Revision != "" {
		msg = "commit " + shortSHA(lb.Revision) + ": " + msg
	}
	st.SetCondition(Condition{Type: ConditionDegraded, Status: "True", Reason: reason,
		Message: truncate(msg, 1000), ObservedGeneration: st.Generation}, now)
	if werr := a.writeStatus(ctx, lb, old, st); werr != nil {
		a.Log.Error(werr, "recording the failure", "lb", lb.Metadata.Name)
	}
	return err
}

func shortSHA(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
