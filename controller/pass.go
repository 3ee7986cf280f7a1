package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// Incus is what an Applier needs of Incus. *incus.Client satisfies it.
type Incus interface {
	GetInstance(ctx context.Context, project, name string, state bool) (*incus.Instance, error)
	CreateInstance(ctx context.Context, project, name, image string, profiles []string, config map[string]string, target string) error
	ClusterMembers(ctx context.Context) ([]incus.Member, error)
	SetState(ctx context.Context, project, name, action string, force bool) error
	UpdateConfig(ctx context.Context, project, name string, keys map[string]string) error
	EnsureDevice(ctx context.Context, project, name, device string, settings map[string]string) error
	RemoveDevice(ctx context.Context, project, name, device string) error
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
	LocalMember(ctx context.Context, location string) bool
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
	// StateDir keeps what the controller makes and must find again: the
	// placeholder certificates (see desiredCerts). "" keeps them in memory.
	StateDir string
	// ACME, when set, obtains and renews the ACME certificates; without
	// it, passes serve no ACME certificate (a placeholder instead).
	ACME *ACMEManager
	// CertRoot is the directory certificate files must resolve under
	// (--cert-root); "" reads them wherever the spec says (tests).
	CertRoot string
	// Leader, when set, is the election: a pass of a controller that does
	// not lead writes nothing, and every status it writes carries its
	// lease generation (see fence).
	Leader Leader
	// PassTimeout bounds one pass, every Incus call and runtime API exchange
	// in it included. Default DefaultPassTimeout.
	PassTimeout time.Duration
	// Members, when set, says which cluster members are lost (see
	// MemberWatch): their instances count as unreachable (status Error)
	// before Incus itself says so.
	Members interface {
		Clustered() bool
		Lost(member string) bool
		LostMembers() []string
	}

	drains       lockedMap[map[string]time.Time] // when each draining member started, by LB instance
	placeholders lockedMap[[]byte]               // each LB's placeholder certificate (see desiredCerts)
	holders      lockedMap[string]               // the replica that held each pair's virtual address at its last pass
	peerAddrs    lockedMap[string]               // each pair replica's own address, when its pass last saw it (see pairPeers)
	checked      lockedMap[bool]                 // instances known to have haproxy and the proxy devices
	vrrpPushed   lockedMap[string]               // the keepalived.conf this process made each replica run
	elsewhere    lockedMap[bool]                 // LB instances on another cluster member than this host
	fullListAt   lockedMap[time.Time]            // when each LB last listed its members with their state
	locations    lockedMap[string]               // the cluster member of each LB instance, when last read
	listings     lockedMap[[]incus.Instance]     // each project's last instance list (see listProject)
	shuttingDown lockedMap[time.Time]            // instances Incus is shutting down, since when (InstanceEvent)
	// neighboursClean: LB instances whose neighbour table this process
	// has flushed once (see forgetNeighbours).
	neighboursClean lockedMap[bool]
}

func (a *Applier) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// Apply makes one pass for lb, which must be defaulted and valid (files
// included): Observe, Plan, Execute, Record.
//
//   - Observe reads the LB instance, the files in it, what HAProxy runs
//     (which config its worker loaded, the live server table, the served
//     certificate) and the members Incus has for each pool.
//   - Plan (plan, a pure function) decides: the desired config, a reload
//     and its reason, or the runtime changes.
//   - Execute does it; Record makes the pass's one status write.
//
// A dry run is a pass without Execute and Record: it writes nothing,
// whether it succeeds or fails. The pass never touches an instance owned
// by another LoadBalancer, nor one without an owner unless the spec asks
// to adopt it. On error, whatever HAProxy ran before keeps running.
func (a *Applier) Apply(ctx context.Context, lb *specs.LoadBalancer, dryRun bool) (*Plan, error) {
	if lb.Spec.HighAvailability != nil {
		return a.applyPair(ctx, lb, dryRun)
	}
	return a.applyOne(ctx, lb, dryRun, nil)
}

// applyOne is the pass of one LB instance. With pin (a replica of a pair
// after the first), its slots take the layout the first replica's pass
// decided instead of one of their own.
func (a *Applier) applyOne(ctx context.Context, lb *specs.LoadBalancer, dryRun bool, pin *pinned) (*Plan, error) {
	timeout := a.PassTimeout
	if timeout <= 0 {
		timeout = DefaultPassTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in := lb.Spec.Instance
	ctx, stop := a.abortIfLost(ctx, in.Project, in.Name)
	defer stop()
	p := &Plan{LB: lb.Metadata.Name, Instance: in.Project + "/" + in.Name}
	obs := &Observation{}
	// Observe, the independent reads at once: the instance (its owner),
	// HAProxy's master on the host-side socket (when it answers, the
	// instance runs), and the list calls of discovery.
	var (
		instErr, listErr error
		hostRT           *haproxy.Runtime
		hostAnswers      bool
		l                *listing
		wg               sync.WaitGroup
	)
	wg.Add(3)
	go func() { defer wg.Done(); instErr = a.observeInstance(ctx, lb, obs) }()
	go func() { defer wg.Done(); hostRT, hostAnswers = a.hostRuntime(ctx, lb) }()
	go func() { defer wg.Done(); l, listErr = a.list(ctx, lb) }()
	wg.Wait()
	if instErr != nil {
		if m, lost := a.onLostMember(in.Project, in.Name); lost {
			instErr = lostError(in.Project, in.Name, m, instErr)
		}
		return p, instErr
	}
	if err := ownership(lb, obs); err != nil {
		return p, err // not ours: nothing is written, not even a status
	}
	if obs.Instance != nil && obs.Instance.Status == statusUnreachable {
		// Its cluster member does not answer: every call into it would
		// only wait out its deadline (a pair serves from its other
		// replicas meanwhile).
		return p, fmt.Errorf("instance %s/%s: its cluster member %s does not answer (Incus reports the instance %s)",
			in.Project, in.Name, obs.Instance.Location, obs.Instance.Status)
	}
	if obs.Exists() && !obs.Running() && obs.Instance.Config[KeyMaintenance] == "true" {
		// The operator took it down for maintenance: it stays down, and
		// nothing is written to it until `incuslb maintenance off`.
		p.Maintenance = true
		return p, nil
	}
	if !dryRun {
		var cfg map[string]string
		if obs.Instance != nil {
			cfg = obs.Instance.Config
		}
		gen, err := a.fence(cfg)
		if err != nil {
			return p, err // a newer leader manages it: nothing is written
		}
		p.generation = gen
	}
	pems, sources, pending, err := a.desiredCerts(ctx, lb)
	certs := haproxy.CertFiles(lb, haproxy.Options{}, pems)
	var backend []haproxy.BackendFile
	if err == nil {
		backend, err = a.loadBackendFiles(lb)
	}
	if lb.Spec.Frontend.TLS != nil && err == nil {
		p.certStatus = append(certStatuses(certs, sources), pending...)
		a.Metrics.setCertificates(lb.Metadata.Name, p.certStatus)
	}
	specHash := SpecHash(lb, append(pems[:len(pems):len(pems)], backendPEMs(backend)...))
	finish := func(reason string, err error) (*Plan, error) {
		err = failed(reason, err)
		if dryRun {
			return p, err
		}
		if m, lost := a.onLostMember(in.Project, in.Name); lost {
			// Nothing can be written to it (see abortIfLost).
			return p, lostError(in.Project, in.Name, m, err)
		}
		// The status says why the pass failed even when its deadline is
		// what ended it: the write gets a deadline of its own.
		// It too ends at once if the member is found lost meanwhile.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
		defer cancel()
		rctx, stop := a.abortIfLost(rctx, in.Project, in.Name)
		defer stop()
		if rerr := a.record(rctx, lb, obs, specHash, p, err); rerr != nil {
			if err == nil {
				return p, rerr
			}
			a.Log.Error(rerr, "recording the status", "lb", lb.Metadata.Name)
		}
		return p, err
	}
	if err != nil {
		return finish("InvalidSpec", err)
	}
	if err := a.ensureInstance(ctx, lb, obs, p, dryRun); err != nil {
		return finish("InstanceNotReady", err)
	}
	if dryRun && (p.CreateInstance || p.AdoptInstance || p.StartInstance || p.InstallHAProxy) {
		return p, nil // nothing more to observe before those
	}
	rt, hostBroken := hostRT, false
	if !hostAnswers || p.CreateInstance || p.StartInstance {
		rt, hostBroken = a.runtimeFor(ctx, lb)
	}
	if hostBroken && !dryRun {
		a.Log.Info("HAProxy answers in the instance but not on the host-side sockets (/run wiped?); adding the proxy devices again", "lb", lb.Metadata.Name)
		if err := a.resetSockets(ctx, lb); err != nil {
			return finish("InstanceNotReady", err)
		}
	}
	var filesErr, haproxyErr error
	wg.Add(2)
	go func() { defer wg.Done(); filesErr = a.observeFiles(ctx, lb, obs, certs, backend) }()
	go func() { defer wg.Done(); haproxyErr = a.observeHAProxy(ctx, lb, rt, obs, len(certs) > 0, backend) }()
	wg.Wait()
	if filesErr != nil {
		return finish("ReadFailed", filesErr)
	}
	if haproxyErr != nil {
		return finish("HAProxyUnreadable", haproxyErr)
	}
	if !obs.Answers {
		a.checked.remove(in.Project + "/" + in.Name)
	}
	if listErr != nil {
		return finish("DiscoveryFailed", listErr)
	}
	prev := previousLayout(lb, obs)
	disc, err := a.discover(ctx, lb, l, prev)
	if err != nil {
		return finish("DiscoveryFailed", err)
	}
	drains, _ := a.drains.get(in.Project + "/" + in.Name)
	plan(planInput{lb: lb, certs: certs, backend: backend, obs: obs, prev: prev, disc: disc, drains: drains, now: a.now(),
		forceReload: a.ForceReload, pin: pin, peers: a.pairPeers(lb, obs)}, p)
	if dryRun {
		for _, op := range p.ops {
			p.Runtime = append(p.Runtime, op.String())
		}
		for _, c := range p.cuts {
			p.Runtime = append(p.Runtime, "would have "+c.String())
		}
		for _, f := range p.certs.set {
			p.Runtime = append(p.Runtime, "certificate "+f.Path+" swap (set ssl cert + commit)")
		}
		for _, f := range p.certs.add {
			p.Runtime = append(p.Runtime, "certificate "+f.Path+" add (new ssl cert + commit + add ssl crt-list)")
		}
		for _, path := range p.certs.del {
			p.Runtime = append(p.Runtime, "certificate "+path+" remove (del ssl crt-list + del ssl cert)")
		}
		for _, f := range p.certs.backendSet {
			p.Runtime = append(p.Runtime, "would have "+backendChange(f))
		}
		return p, nil
	}
	if err := a.execute(ctx, lb, rt, obs, p); err != nil {
		reason := "RuntimeUpdateFailed"
		if p.Reload != ReloadNone {
			reason = "ReloadFailed"
		}
		return finish(reason, err)
	}
	a.drains.set(in.Project+"/"+in.Name, p.drains)
	if p.CreateInstance || p.StartInstance || p.Reload != ReloadNone {
		// A new, restarted or re-set-up instance: its keepalived is looked
		// at afresh (see pushVRRP).
		a.vrrpPushed.remove(in.Project + "/" + in.Name)
	}
	if p.Address == "" || lb.Spec.HighAvailability != nil {
		if inst, err := a.Incus.GetInstance(ctx, in.Project, in.Name, true); err == nil {
			p.Address, p.inst = ownAddress(lb, inst), inst
		}
	}
	return finish("", nil)
}

// statusUnreachable is the status Incus gives an instance whose cluster
// member is offline.
const statusUnreachable = "Error"

// DefaultPassTimeout bounds a pass: long enough to create an instance, wait
// for its address and install haproxy from a package mirror; a pass that
// hangs on Incus or HAProxy ends there, as a failure, and is retried.
const DefaultPassTimeout = 3 * time.Minute

// recordTimeout bounds the status write of a pass.
const recordTimeout = 5 * time.Second

// addressPoll is how soon to look again for a member that runs but has no
// DHCP address yet (no event announces the address; it shows up 0.5-1 s
// after the start).
const addressPoll = 100 * time.Millisecond

// drainPoll is how often a draining member's sessions are counted.
const drainPoll = time.Second

// SpecHash identifies a spec and certificate: it changes exactly when
// either does.
func SpecHash(lb *specs.LoadBalancer, pems [][]byte) string {
	certs := make([]string, len(pems))
	for i, p := range pems {
		certs[i] = hash(p)
	}
	b, _ := json.Marshal(struct {
		Name  string
		Spec  specs.LoadBalancerSpec
		Certs []string
	}{lb.Metadata.Name, lb.Spec, certs})
	return hash(b)
}

// backendPEMs are the contents of files, for SpecHash.
func backendPEMs(files []haproxy.BackendFile) [][]byte {
	out := make([][]byte, len(files))
	for i, f := range files {
		out[i] = f.PEM
	}
	return out
}

func hash(b []byte) string {
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (a *Applier) loadCerts(lb *specs.LoadBalancer) ([][]byte, error) {
	load := specs.LoadCertificate
	if a.CertRoot != "" {
		load = func(path string) ([]byte, error) { return specs.LoadCertificateUnder(a.CertRoot, path) }
	}
	pems, ferr := specs.LoadCertificates(lb.Spec.Frontend.TLS, load)
	if ferr != nil {
		ferr.Source = lb.Source
		return nil, specs.ErrorList{*ferr}
	}
	return pems, nil
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

func (l *lockedMap[V]) remove(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}
