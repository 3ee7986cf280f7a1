package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/incus"
)

// MemberWatch finds lost cluster members faster than Incus does. Incus
// marks a member offline only after cluster.offline_threshold (20 s by
// default), and until then lists its instances as running; no event
// arrives for them. MemberWatch connects to every member's API address each
// Interval; a member that fails Fall connects in a row is lost, and its
// instances leave their pools (see Applier.Members) until it answers
// again. A controller cut off from a member alone takes the member's
// instances out too: it cannot tell the two apart.
type MemberWatch struct {
	// Members lists the cluster's members (nothing when not clustered).
	Members func(ctx context.Context) ([]incus.Member, error)
	// Dial connects to addr; default a TCP connect. It must honour ctx.
	Dial func(ctx context.Context, addr string) error
	// Interval is the probe period and each connect's deadline. Default
	// DefaultMemberProbe.
	Interval time.Duration
	// Fall is how many failed connects in a row make a member lost.
	// Default 2.
	Fall int
	// OnChange is called when a member is lost or answers again.
	OnChange func()
	Log      logr.Logger

	mu     sync.Mutex
	fails  map[string]int
	lost   map[string]bool
	listed time.Time
	list   []incus.Member
}

// DefaultMemberProbe is MemberWatch's default interval: with Fall 2, a lost
// member's instances leave their pools within about a second and a half,
// well inside two health-check intervals of any pool (at least 1 s).
const DefaultMemberProbe = 500 * time.Millisecond

// memberListEvery is how often the member list is read again.
const memberListEvery = 30 * time.Second

// Lost reports whether member is lost. "" (not clustered) never is.
func (w *MemberWatch) Lost(member string) bool {
	if w == nil || member == "" {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost[member]
}

// Clustered reports whether the last member list named any member: only
// then can one be lost.
func (w *MemberWatch) Clustered() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.list) > 0
}

// LostMembers lists the lost members, sorted.
func (w *MemberWatch) LostMembers() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for m := range w.lost {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

// Run probes until ctx ends.
func (w *MemberWatch) Run(ctx context.Context) {
	t := time.NewTicker(w.interval())
	defer t.Stop()
	for {
		if changed := w.Probe(ctx, time.Now()); changed && w.OnChange != nil {
			w.OnChange()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *MemberWatch) interval() time.Duration {
	if w.Interval > 0 {
		return w.Interval
	}
	return DefaultMemberProbe
}

// Probe makes one round: it reads the member list when due, connects to
// every member at once (each within Interval) and reports whether a member
// was lost or came back.
func (w *MemberWatch) Probe(ctx context.Context, now time.Time) bool {
	w.mu.Lock()
	due := w.listed.IsZero() || now.Sub(w.listed) >= memberListEvery
	w.mu.Unlock()
	if due && w.Members != nil {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ms, err := w.Members(lctx)
		cancel()
		w.mu.Lock()
		if err == nil {
			w.list, w.listed = ms, now
		} else if w.listed.IsZero() {
			w.listed = now // a standalone or unreachable server: try again later
		}
		w.mu.Unlock()
	}
	w.mu.Lock()
	list := slices.Clone(w.list)
	w.mu.Unlock()
	ok := make([]bool, len(list))
	var wg sync.WaitGroup
	for i, m := range list {
		if m.Address == "" {
			ok[i] = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, w.interval())
			defer cancel()
			ok[i] = w.dial(dctx, m.Address) == nil
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return false // cut short: no verdict
	}
	fall := w.Fall
	if fall <= 0 {
		fall = 2
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fails == nil {
		w.fails, w.lost = map[string]int{}, map[string]bool{}
	}
	changed := false
	for i, m := range list {
		switch {
		case ok[i]:
			w.fails[m.Name] = 0
			if w.lost[m.Name] {
				delete(w.lost, m.Name)
				changed = true
				w.Log.Info("cluster member answers again: its instances may rejoin their pools", "member", m.Name)
			}
		default:
			w.fails[m.Name]++
			if w.fails[m.Name] >= fall && !w.lost[m.Name] {
				w.lost[m.Name] = true
				changed = true
				w.Log.Info("cluster member lost: its instances leave their pools", "member", m.Name, "address", m.Address, "failedConnects", w.fails[m.Name])
			}
		}
	}
	return changed
}

func (w *MemberWatch) dial(ctx context.Context, addr string) error {
	if w.Dial != nil {
		return w.Dial(ctx, addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// abortIfLost returns a context that ends when ctx does, or as soon as the
// LB instance project/name is found on a lost member (see MemberWatch): a
// pass under way when its instance's member dies would otherwise wait on
// every call into it until its deadline, and hold up the pass of its pair
// (whose other replicas must evict the member's backends). stop releases
// it.
func (a *Applier) abortIfLost(ctx context.Context, project, name string) (context.Context, func()) {
	if a.Members == nil || !a.Members.Clustered() {
		return ctx, func() {} // no member to lose: no watcher per pass
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(lostCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if _, lost := a.onLostMember(project, name); lost {
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// lostCheckEvery is how often a pass looks whether its instance's member
// was lost meanwhile.
const lostCheckEvery = 100 * time.Millisecond

// onLostMember reports whether the LB instance project/name was, when last
// read, on a cluster member Members says is lost, and which.
func (a *Applier) onLostMember(project, name string) (string, bool) {
	m, ok := a.locations.get(project + "/" + name)
	return m, ok && a.Members != nil && a.Members.Lost(m)
}

// errMemberLost marks the error of a pass whose LB instance is on a lost
// member (see lostError).
var errMemberLost = errors.New("it does not answer")

// lostError is the one wording of that error; cause, when not nil, is
// what the pass was doing when it stopped.
func lostError(project, name, member string, cause error) error {
	if errors.Is(cause, errMemberLost) {
		return cause // said already
	}
	err := fmt.Errorf("instance %s/%s: its cluster member %s is lost (%w)", project, name, member, errMemberLost)
	if cause != nil {
		return fmt.Errorf("%w: %w", err, cause)
	}
	return err
}

// unreachable marks inst unreachable when it runs on a member Members says
// is lost: Incus still lists it as it last knew it.
func (a *Applier) unreachable(inst *incus.Instance) {
	if a.Members != nil && inst.Status != statusUnreachable && a.Members.Lost(inst.Location) {
		inst.Status = statusUnreachable
	}
}
