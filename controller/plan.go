package controller

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
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
	PushCert       bool   // the certificate HAProxy serves (or its file) differs
	ConfigDiff     string // unified diff, file in the container -> desired; "" when equal
	Reload         ReloadReason
	ReloadDetail   string   // the reason in words, for the log and the CLI
	Runtime        []string // changes through the runtime API, no reload
	// RequeueAfter asks for another pass soon: a member waits for its
	// address, or drains, or old workers hold sessions.
	RequeueAfter time.Duration
	// OldWorkers counts the sessions of each old worker, by PID.
	OldWorkers map[int]int

	desired    []byte
	hash       string // of desired
	layout     haproxy.Layout
	ops        []slotOp
	swapCert   bool            // set ssl cert through the runtime API
	writeFile  bool            // refresh the config file (no reload)
	stageCert  bool            // write the certificate file (reload path)
	cuts       []oldCut        // old workers' sessions to servers that are gone
	draining   map[string]bool // slots ("pool/index") that drain
	drains     map[string]time.Time
	waiting    bool // a selected member has no address yet
	drainsLeft bool // a member is still draining
}

// Changed reports whether the pass changes anything.
func (p *Plan) Changed() bool {
	return p.CreateInstance || p.AdoptInstance || p.StartInstance || p.InstallHAProxy || p.StartHAProxy ||
		p.PushCert || p.ConfigDiff != "" || p.Reload != "" || len(p.Runtime) > 0 || len(p.ops) > 0 || len(p.cuts) > 0
}

// Converging reports whether the container does not run the desired state
// yet though the pass succeeded: a member drains, or waits for its address.
// (A pass may also ask to look again only to watch old workers' sessions.)
func (p *Plan) Converging() bool { return p.drainsLeft || p.waiting }

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

// slotOp is one change of a slot through the runtime API.
type slotOp struct {
	kind   string // join, drain, ready, park
	pool   string
	slot   int
	member haproxy.Slot
}

func (o slotOp) String() string {
	where := o.pool + "/" + haproxy.SlotName(o.slot)
	switch o.kind {
	case "join":
		return fmt.Sprintf("%s <- %s (%s)", where, o.member.Member, o.member.Endpoint())
	case "drain":
		return fmt.Sprintf("%s draining %s (%s)", where, o.member.Member, o.member.Endpoint())
	case "ready":
		return fmt.Sprintf("%s ready again (%s)", where, o.member.Member)
	}
	return where + " parked"
}

// planInput is everything planning needs; planning reads nothing else.
type planInput struct {
	lb   *specs.LoadBalancer
	cert []byte // nil without TLS
	obs  *Observation
	prev haproxy.Layout // where members sit now (see previousLayout)
	disc *discovery
	// drains is when each draining member started to drain, by drainKey.
	drains      map[string]time.Time
	now         time.Time
	forceReload bool
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
	p.layout = haproxy.Assign(lb, members, trimForeign(lb, in.prev, members))
	p.desired = haproxy.Render(lb, p.layout, haproxy.Options{})
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

	certFileDiffers := in.cert != nil && !bytes.Equal(obs.CertFile, in.cert)
	certLoadedDiffers := in.cert != nil && ours && obs.CertSHA1 != certSHA1(in.cert)
	p.PushCert = certFileDiffers || certLoadedDiffers

	switch {
	case !obs.Answers:
		p.StartHAProxy, p.Reload, p.ReloadDetail = true, ReloadStart, "HAProxy was not running"
	case obs.LoadedHash == "":
		p.Reload, p.ReloadDetail = ReloadFirstConfig, "HAProxy runs a config incuslb did not write"
	case obs.LoadedHash != p.hash:
		p.Reload, p.ReloadDetail = reloadReason(in, p)
	default:
		p.ops = slotOps(lb, liveSlots(obs.Servers, pools), p.layout, p.draining)
		p.swapCert = certLoadedDiffers
		if in.forceReload && (len(p.ops) > 0 || p.swapCert) {
			p.ops, p.swapCert = nil, false
			p.Reload, p.ReloadDetail = ReloadForced, "membership or certificate changed (reload forced)"
			break
		}
		p.writeFile = p.ConfigDiff != ""
		p.stageCert = certFileDiffers
	}
	if p.Reload != ReloadNone {
		p.stageCert = certFileDiffers
	}
}

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

// oldCut is a session of an old worker to close.
type oldCut struct {
	pid             int
	id              string
	backend, server string
	why             string // the server's state in the current worker
}

func (c oldCut) String() string {
	return fmt.Sprintf("closed session %s of old worker %d to %s/%s (%s)", c.id, c.pid, c.backend, c.server, c.why)
}

// oldCuts picks the sessions of old workers whose server the current
// worker has marked DOWN, put in maintenance or no longer has. An old
// worker (one that still serves the sessions opened before a reload) runs
// no health checks and takes no runtime command for its servers, so
// without this a WebSocket to a frozen or departed backend would hang
// until hard-stop-after. A draining server keeps its sessions.
func oldCuts(obs *Observation) []oldCut {
	if len(obs.OldSessions) == 0 {
		return nil
	}
	state := map[string]string{}
	for _, s := range obs.Servers {
		st := s.State()
		if parked(s) {
			st = "parked"
		}
		state[s.Backend+"/"+s.Name] = st
	}
	var cuts []oldCut
	for _, pid := range slices.Sorted(maps.Keys(obs.OldSessions)) {
		for _, sess := range obs.OldSessions[pid] {
			if sess.Server == "" || sess.Backend == "" {
				continue
			}
			why, ok := state[sess.Backend+"/"+sess.Server]
			if ok && (why == "UP" || why == "DRAIN") {
				continue
			}
			if !ok {
				why = "gone"
			}
			cuts = append(cuts, oldCut{pid: pid, id: sess.ID, backend: sess.Backend, server: sess.Server, why: why})
		}
	}
	return cuts
}

func oldWorkersHoldSessions(obs *Observation) bool {
	for _, sess := range obs.OldSessions {
		for _, s := range sess {
			if s.Server != "" {
				return true
			}
		}
	}
	return false
}

// shortestCheck is the shortest health check interval of lb's pools.
func shortestCheck(lb *specs.LoadBalancer) time.Duration {
	d := time.Duration(0)
	for _, p := range lb.Spec.Pools {
		if i := p.HealthCheck.Interval.Duration; i > 0 && (d == 0 || i < d) {
			d = i
		}
	}
	if d == 0 {
		d = time.Second
	}
	return d
}

// slotOps lists the runtime changes that make the live slots equal to
// layout. draining holds the slots ("pool/index") that must drain rather
// than take traffic.
func slotOps(lb *specs.LoadBalancer, live map[string][]haproxy.ServerState, layout haproxy.Layout, draining map[string]bool) []slotOp {
	var ops []slotOp
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		for i, want := range layout[p.Name] {
			var have haproxy.ServerState
			if i < len(live[p.Name]) {
				have = live[p.Name][i]
			}
			op := slotOp{pool: p.Name, slot: i, member: want}
			switch {
			case want.Parked():
				if !parked(have) || have.State() != "MAINT" {
					op.kind = "park"
				}
			case draining[slotKey(p.Name, i)]:
				if have.State() != "DRAIN" {
					op.kind = "drain"
				}
			case have.Address != want.Address || have.Port != want.Port:
				op.kind = "join"
			case have.State() == "MAINT" || have.State() == "DRAIN":
				op.kind = "ready"
			}
			if op.kind != "" {
				ops = append(ops, op)
			}
		}
	}
	return ops
}

func slotKey(pool string, i int) string { return fmt.Sprintf("%s/%d", pool, i) }

// drainKey names a draining member for the drain clock.
func drainKey(lb, pool string, s haproxy.Slot) string {
	return lb + "/" + pool + "/" + s.Endpoint()
}

// settleDrains decides, for each member that left its pool while it still
// runs, whether it keeps draining (it stays in its slot, in p.draining) or
// is done: no sessions left, or drainTimeout passed. Members that are gone
// (stopped, deleted, another address) are parked at once.
func settleDrains(in planInput, members map[string][]haproxy.Member, p *Plan) {
	timeout := in.lb.Spec.Defaults.DrainTimeout.Duration
	for _, l := range leavers(in.lb, in.prev, in.disc) {
		if !l.running {
			continue
		}
		key := drainKey(in.lb.Metadata.Name, l.pool, l.member)
		started, ok := in.drains[key]
		if !ok {
			started = in.now // a restarted controller starts the clock again
		}
		var have haproxy.ServerState
		live := liveSlots(in.obs.Servers, map[string]bool{l.pool: true})[l.pool]
		if l.slot < len(live) {
			have = live[l.slot]
		}
		if have.State() == "DRAIN" {
			n, known := in.obs.Sessions[l.pool+"/"+haproxy.SlotName(l.slot)]
			if (known && n == 0) || in.now.Sub(started) >= timeout {
				continue // drained: its slot is parked
			}
		}
		p.drains[key] = started
		members[l.pool] = append(members[l.pool], haproxy.Member{Name: l.member.Member, Address: l.member.Address, Port: l.member.Port})
		p.draining[slotKey(l.pool, l.slot)] = true
		p.drainsLeft = true
	}
}

// leaver is a member of the previous layout that discovery no longer
// returns.
type leaver struct {
	pool    string
	slot    int
	member  haproxy.Slot
	running bool // the instance still runs at that address: drain it
}

func leavers(lb *specs.LoadBalancer, prev haproxy.Layout, disc *discovery) []leaver {
	var out []leaver
	for _, p := range lb.Spec.Pools {
		if len(p.Selector) == 0 {
			continue
		}
		current := map[string]bool{}
		for _, m := range disc.members[p.Name] {
			port := m.Port
			if port == 0 {
				port = p.Port
			}
			current[fmt.Sprintf("%s:%d", m.Address, port)] = true
		}
		for i, s := range prev[p.Name] {
			if s.Parked() || current[s.Endpoint()] {
				continue
			}
			l := leaver{pool: p.Name, slot: i, member: s}
			if inst, ok := disc.seen[p.Project+"/"+s.Member]; ok {
				l.running = inst.Running() && inst.IPv4(p.NIC) == s.Address
			}
			out = append(out, l)
		}
	}
	return out
}

// previousLayout is where members sit now: the live server table when
// HAProxy runs a config incuslb wrote (it is the truth; the file is a
// cache), with member names from the file where the endpoints agree;
// otherwise the file.
func previousLayout(lb *specs.LoadBalancer, obs *Observation) haproxy.Layout {
	pools := haproxy.SelectorPools(lb)
	prev := previousSlots(obs, pools)
	return prev
}

// trimForeign bounds what was read back from the container: incuslb grows
// a pool by whole steps of its slot count, so a pool of another length was
// edited by hand ("server srv4000 ..."). Such a pool keeps only the slots up
// to its last current member, in whole steps. (The slot codec already
// ignores indices over haproxy.MaxSlots.)
func trimForeign(lb *specs.LoadBalancer, prev haproxy.Layout, members map[string][]haproxy.Member) haproxy.Layout {
	out := haproxy.Layout{}
	for _, p := range lb.Spec.Pools {
		slots, step := prev[p.Name], max(p.Slots, 1)
		if len(slots)%step == 0 {
			if slots != nil {
				out[p.Name] = slots
			}
			continue
		}
		current := map[string]bool{}
		for _, m := range members[p.Name] {
			port := m.Port
			if port == 0 {
				port = p.Port
			}
			current[fmt.Sprintf("%s:%d", m.Address, port)] = true
		}
		used := 0
		for i, s := range slots {
			if !s.Parked() && current[s.Endpoint()] {
				used = i + 1
			}
		}
		out[p.Name] = slots[:(used+step-1)/step*step]
	}
	return out
}

func previousSlots(obs *Observation, pools map[string]bool) haproxy.Layout {
	file := haproxy.ParseLayout(obs.File, pools)
	if !obs.Answers || obs.LoadedHash == "" {
		return file
	}
	out := haproxy.Layout{}
	for pool, live := range liveSlots(obs.Servers, pools) {
		slots := make([]haproxy.Slot, len(live))
		for i, s := range live {
			if parked(s) {
				continue
			}
			slots[i] = haproxy.Slot{Address: s.Address, Port: s.Port}
			if i < len(file[pool]) && file[pool][i].Endpoint() == slots[i].Endpoint() {
				slots[i].Member = file[pool][i].Member
			}
		}
		out[pool] = slots
	}
	return out
}

// certSHA1 is the SHA-1 fingerprint of a PEM's first certificate, as
// HAProxy's `show ssl cert` prints it.
func certSHA1(pemData []byte) string {
	for rest := pemData; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return ""
		}
		if b.Type == "CERTIFICATE" {
			sum := sha1.Sum(b.Bytes)
			return strings.ToUpper(hex.EncodeToString(sum[:]))
		}
	}
}
