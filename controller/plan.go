package controller

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/internal/textdiff"
	"github.com/incuslb/incuslb/specs"
)

// ReloadReason says why HAProxy must load its config anew. It is the
// reason label of incuslb_reloads_total: a small fixed set, never a pool
// or instance name (those go to the log, in Plan.ReloadDetail).
type ReloadReason string

// The reload reasons.
const (
	ReloadNone ReloadReason = ""
	// ReloadStart: HAProxy was not running; it is started on the desired
	// config.
	ReloadStart ReloadReason = "start"
	// ReloadFirstConfig: HAProxy runs a config incuslb did not write (the
	// package's default, or one from before incuslb).
	ReloadFirstConfig ReloadReason = "first-config"
	// ReloadConfigChanged: the structure of the config changed (anything but
	// which members sit in which slots).
	ReloadConfigChanged ReloadReason = "config-changed"
	// ReloadSlotsGrew: a selector pool ran out of slots.
	ReloadSlotsGrew ReloadReason = "slots-grew"
	// ReloadNotLoaded: the file already holds the desired config but HAProxy
	// runs another one (a controller killed between the rename and the
	// reload, or a reload that failed).
	ReloadNotLoaded ReloadReason = "not-loaded"
	// ReloadForced: a membership or certificate change made by a reload
	// because Applier.ForceReload asks for it (the seed's way, for make
	// bench).
	ReloadForced ReloadReason = "forced"
)

// Plan is what a pass does (or, in a dry run, would do), and after it ran,
// what it did.
type Plan struct {
	LB       string
	Instance string // project/name
	Address  string // the LB instance's IPv4 address, when known

	CreateInstance bool
	AdoptInstance  bool
	StartInstance  bool
	InstallHAProxy bool
	StartHAProxy   bool
	// Maintenance: the instance is stopped and in maintenance
	// (KeyMaintenance): the pass left it alone.
	Maintenance  bool
	PushCert     bool   // the certificate HAProxy serves (or its file) differs
	ConfigDiff   string // unified diff, file in the container -> desired; "" when equal
	Reload       ReloadReason
	ReloadDetail string   // the reason in words, for the log and the CLI
	Runtime      []string // changes through the runtime API, no reload
	// RequeueAfter asks for another pass soon: a member waits for its
	// address, or drains, or old workers hold sessions.
	RequeueAfter time.Duration
	// OldWorkers counts the sessions of each old worker, by PID.
	OldWorkers map[int]int

	// A pair's plan (spec.highAvailability) holds one plan per replica,
	// primary first, and what changed in keepalived.
	Replicas  []*Plan
	VirtualIP string
	Holder    string   // the replica that holds the virtual address, "" when none does
	VRRP      []string // keepalived changes, one line each

	desired    []byte
	hash       string // of desired
	layout     haproxy.Layout
	ops        []slotOp
	certs      certPlan        // certificates: through the runtime API, or staged for a reload
	certStatus []CertStatus    // the certificates served, for status and metrics
	writeFile  bool            // refresh the config file (no reload)
	cuts       []oldCut        // old workers' sessions to servers that are gone
	draining   map[string]bool // slots ("pool/index") that drain
	drains     map[string]time.Time
	waiting    bool                      // a selected member has no address yet
	drainsLeft bool                      // a member is still draining
	weights    map[string]map[string]int // every member's runtime weight, by pool and name (see desiredWeights)
	// LabelProblems are the members' labels that could not be read: the
	// member keeps the default, and the status says so.
	LabelProblems []string
	inst          *incus.Instance // the LB instance with its state, read at the end of a replica's pass
	generation    int64           // the lease generation the pass writes under (0: no election)
}

// Changed reports whether the pass changes anything.
func (p *Plan) Changed() bool {
	for _, r := range p.Replicas {
		if r.Changed() {
			return true
		}
	}
	return len(p.VRRP) > 0 || p.CreateInstance || p.AdoptInstance || p.StartInstance || p.InstallHAProxy || p.StartHAProxy ||
		p.PushCert || p.ConfigDiff != "" || p.Reload != "" || len(p.Runtime) > 0 || len(p.ops) > 0 || len(p.cuts) > 0
}

// Converging reports whether the container does not run the desired state
// yet though the pass succeeded: a member drains, or waits for its address.
// (A pass may also ask to look again only to watch old workers' sessions.)
func (p *Plan) Converging() bool {
	for _, r := range p.Replicas {
		if r.Converging() {
			return true
		}
	}
	return p.drainsLeft || p.waiting
}

// String describes the plan in one line, for logs and tests.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s):", p.LB, p.Instance)
	for _, f := range []struct {
		on   bool
		what string
	}{{p.CreateInstance, "create"}, {p.AdoptInstance, "adopt"}, {p.StartInstance, "start instance"},
		{p.InstallHAProxy, "install haproxy"}, {p.StartHAProxy, "start haproxy"}, {p.PushCert, "certificate"},
		{p.ConfigDiff != "", "config differs"}} {
		if f.on {
			b.WriteString(" " + f.what + ";")
		}
	}
	if p.Reload != ReloadNone {
		fmt.Fprintf(&b, " reload %s (%s);", p.Reload, p.ReloadDetail)
	}
	for _, op := range p.ops {
		fmt.Fprintf(&b, " %s %s;", op.kind, op)
	}
	for _, c := range p.cuts {
		fmt.Fprintf(&b, " %s;", c)
	}
	if len(p.Runtime) > 0 {
		fmt.Fprintf(&b, " runtime %q;", p.Runtime)
	}
	if p.RequeueAfter > 0 {
		fmt.Fprintf(&b, " requeue after %v", p.RequeueAfter)
	}
	return b.String()
}

// planInput is everything planning needs; planning reads nothing else.
type planInput struct {
	lb    *specs.LoadBalancer
	certs []haproxy.CertFile // none without TLS
	// backend are the pools' backendTLS files.
	backend []haproxy.BackendFile
	obs     *Observation
	prev    haproxy.Layout // where members sit now (see previousLayout)
	disc    *discovery
	// drains is when each draining member started to drain, by drainKey.
	drains      map[string]time.Time
	now         time.Time
	forceReload bool
	// pin, for a replica of a pair after the first: the slots the first
	// replica's pass decided (see pinned).
	pin *pinned
	// peers are a pair's replicas, for the peers section (see pairPeers).
	peers []haproxy.Peer
}

// plan decides a pass from the spec and the observation. It is a pure
// function: no I/O, no clock but in.now.
func plan(in planInput, p *Plan) {
	lb, obs := in.lb, in.obs
	pools := haproxy.SelectorPools(lb)
	ours := obs.Answers && obs.LoadedHash != ""

	members := map[string][]haproxy.Member{}
	for k, v := range in.disc.members {
		members[k] = append([]haproxy.Member(nil), v...)
	}
	p.draining, p.drains = map[string]bool{}, map[string]time.Time{}
	if ours && !in.forceReload {
		settleDrains(in, members, p)
	}
	p.layout = haproxy.AssignWarm(lb, members, trimForeign(lb, in.prev, members), coldSlots(lb, obs))
	if in.pin != nil {
		p.layout = in.pin.layout
		for k := range in.pin.draining {
			p.draining[k] = true
		}
	}
	p.weights, p.LabelProblems = desiredWeights(lb, in.disc), in.disc.problems
	p.desired = haproxy.Render(lb, p.layout, haproxy.Options{Peers: in.peers, LocalPeer: lb.Spec.Instance.Name})
	p.hash = haproxy.ClaimedHash(p.desired)
	p.ConfigDiff = textdiff.Unified("running "+haproxy.ConfigPath, "desired", obs.File, p.desired)
	p.waiting = in.disc.waiting > 0
	p.cuts = oldCuts(obs)
	p.OldWorkers = map[int]int{}
	for pid, sess := range obs.OldSessions {
		p.OldWorkers[pid] = len(sess)
	}
	switch {
	case p.drainsLeft:
		p.RequeueAfter = drainPoll
	case p.waiting:
		p.RequeueAfter = addressPoll
	case oldWorkersHoldSessions(obs):
		// Old workers run no health checks: look at their sessions again
		// as often as the current worker checks its servers.
		p.RequeueAfter = shortestCheck(lb)
	}

	p.certs = planCerts(in.certs, obs.Certs, ours)
	planBackendCerts(&p.certs, in.backend, obs.Certs.Backend, ours)
	p.PushCert = p.certs.changes()

	switch {
	case !obs.Answers:
		p.StartHAProxy, p.Reload, p.ReloadDetail = true, ReloadStart, "HAProxy was not running"
	case obs.LoadedHash == "":
		p.Reload, p.ReloadDetail = ReloadFirstConfig, "HAProxy runs a config incuslb did not write"
	case obs.LoadedHash != p.hash:
		p.Reload, p.ReloadDetail = reloadReason(in, p)
	default:
		ev := &evictions{now: in.now, window: lb.Spec.Defaults.Timeouts.Connect.Duration + evictMargin,
			since: in.drains, keep: map[string]time.Time{}}
		p.ops = slotOps(lb, liveSlots(obs.Servers, pools), p.layout, p.draining, ev)
		maps.Copy(p.drains, ev.keep)
		if ev.next > 0 && (p.RequeueAfter == 0 || ev.next < p.RequeueAfter) {
			p.RequeueAfter = ev.next
		}
		p.drainsLeft = p.drainsLeft || ev.next > 0 // an eviction is a drain too
		if in.forceReload && (len(p.ops) > 0 || p.certs.runtimeChanges()) {
			p.ops = nil
			p.Reload, p.ReloadDetail = ReloadForced, "membership or certificate changed (reload forced)"
			break
		}
		// Weights are runtime state only: a forced reload would not set them.
		p.ops = append(p.ops, weightOps(lb, liveSlots(obs.Servers, pools), p.layout, p.weights, p.draining)...)
		p.writeFile = p.ConfigDiff != ""
	}
	if p.Reload != ReloadNone {
		// The new worker loads the certificates from disk.
		p.certs.dropRuntime()
	}
}

// evictMargin is added to timeouts.connect before an evicted slot is
// parked: the connects that were under way have failed by then.
const evictMargin = 250 * time.Millisecond

// reloadReason tells apart the ways HAProxy's loaded config can differ
// from the desired one.
func reloadReason(in planInput, p *Plan) (ReloadReason, string) {
	file := in.obs.File
	if file != nil && haproxy.ClaimedHash(file) == p.hash && haproxy.ConfigHash(file, haproxy.SelectorPools(in.lb)) == p.hash {
		return ReloadNotLoaded, fmt.Sprintf("the file holds the desired config %s but HAProxy runs %s", p.hash, in.obs.LoadedHash)
	}
	for _, pool := range slices.Sorted(maps.Keys(p.layout)) {
		if n, was := len(p.layout[pool]), len(in.prev[pool]); n > was && was > 0 {
			return ReloadSlotsGrew, fmt.Sprintf("pool %s ran out of slots (%d -> %d)", pool, was, n)
		}
	}
	return ReloadConfigChanged, fmt.Sprintf("config changed (%s -> %s)", in.obs.LoadedHash, p.hash)
}

// certSHA1 is the SHA-1 fingerprint of a PEM's first certificate, as
// HAProxy's `show ssl cert` prints it.
func certSHA1(pemData []byte) string {
	der := leafDER(pemData)
	if der == nil {
		return ""
	}
	sum := sha1.Sum(der)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}
