package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/incus"
)

func TestMemberWatch(t *testing.T) {
	down := map[string]bool{}
	lists := 0
	w := &MemberWatch{
		Members: func(context.Context) ([]incus.Member, error) {
			lists++
			return []incus.Member{{Name: "m1", Address: "10.0.0.1:8443"}, {Name: "m2", Address: "10.0.0.2:8443"}, {Name: "m3"}}, nil
		},
		Dial: func(_ context.Context, addr string) error {
			if down[addr] {
				return errors.New("timeout")
			}
			return nil
		},
		Log: logr.Discard(),
	}
	now := time.Unix(0, 0)
	step := func(want bool, lost ...string) {
		t.Helper()
		now = now.Add(DefaultMemberProbe)
		if got := w.Probe(context.Background(), now); got != want {
			t.Fatalf("changed = %v, want %v", got, want)
		}
		got := w.LostMembers()
		if len(got) != len(lost) || (len(lost) > 0 && got[0] != lost[0]) {
			t.Fatalf("lost = %v, want %v", got, lost)
		}
	}
	step(false)
	if !w.Clustered() {
		t.Fatal("a watch that listed three members is not clustered")
	}
	down["10.0.0.2:8443"] = true
	step(false)       // one failed connect: not yet
	step(true, "m2")  // the second: lost
	step(false, "m2") // still lost: no change
	if !w.Lost("m2") || w.Lost("m1") || w.Lost("m3") || w.Lost("") {
		t.Fatal("Lost disagrees with LostMembers")
	}
	down["10.0.0.2:8443"] = false
	step(true) // answers again
	if lists != 1 {
		t.Fatalf("listed the members %d times within %v", lists, memberListEvery)
	}
	// A round cut short gives no verdict.
	down["10.0.0.1:8443"] = true
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := 0; i < 3; i++ {
		if w.Probe(ctx, now) {
			t.Fatal("a cancelled round changed something")
		}
	}
	if w.Lost("m1") {
		t.Fatal("a cancelled round lost a member")
	}
	var nilWatch *MemberWatch
	if nilWatch.Lost("m1") {
		t.Fatal("a nil watch lost a member")
	}
}

// An instance on a lost member is out of every pool and, as an LB
// instance, fails its pass at once.
func TestUnreachableMarksLostMembersInstances(t *testing.T) {
	a := &Applier{Members: lostSet{"m2": true}}
	for _, c := range []struct {
		loc, status, want string
	}{
		{"m1", "Running", "Running"},
		{"m2", "Running", statusUnreachable},
		{"m2", "Stopped", statusUnreachable},
		{"", "Running", "Running"},
	} {
		inst := &incus.Instance{Location: c.loc, Status: c.status}
		a.unreachable(inst)
		if inst.Status != c.want {
			t.Errorf("%s on %q: %s, want %s", c.status, c.loc, inst.Status, c.want)
		}
	}
}

type lostSet map[string]bool

func (l lostSet) Lost(m string) bool { return l[m] }

func (l lostSet) Clustered() bool { return true }

func (l lostSet) LostMembers() []string {
	var out []string
	for m, lost := range l {
		if lost {
			out = append(out, m)
		}
	}
	return out
}

// An LB instance last seen on a lost member is not read again (Incus would
// forward the read to the member and wait).
func TestOnLostMember(t *testing.T) {
	a := &Applier{Members: lostSet{"m2": true}}
	a.locations.set("p/lb-1", "m1")
	a.locations.set("p/lb-2", "m2")
	if _, lost := a.onLostMember("p", "lb-1"); lost {
		t.Error("lb-1 on m1 counted lost")
	}
	if m, lost := a.onLostMember("p", "lb-2"); !lost || m != "m2" {
		t.Errorf("lb-2 on m2: %q %v", m, lost)
	}
	if _, lost := a.onLostMember("p", "never-read"); lost {
		t.Error("an instance never read counted lost")
	}
}

// A pass under way stops as soon as its instance's member is lost.
func TestAbortIfLost(t *testing.T) {
	lost := &flipSet{}
	a := &Applier{Members: lost}
	a.locations.set("p/lb-1", "m1")
	ctx, stop := a.abortIfLost(context.Background(), "p", "lb-1")
	defer stop()
	select {
	case <-ctx.Done():
		t.Fatal("ended while the member answers")
	case <-time.After(3 * lostCheckEvery):
	}
	lost.set(true)
	select {
	case <-ctx.Done():
	case <-time.After(time.Second):
		t.Fatal("still running a second after its member was lost")
	}
}

type flipSet struct {
	mu   sync.Mutex
	lost bool
}

func (f *flipSet) set(v bool) { f.mu.Lock(); f.lost = v; f.mu.Unlock() }

func (f *flipSet) Clustered() bool { return true }

func (f *flipSet) Lost(string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.lost }

func (f *flipSet) LostMembers() []string {
	if f.Lost("") {
		return []string{"m1"}
	}
	return nil
}

// stallingIncus answers list calls like fakeIncus until stall is set, then
// only when their context ends (Incus waiting on a lost member).
type stallingIncus struct {
	*fakeIncus
	stall bool
}

func (s *stallingIncus) ListInstances(ctx context.Context, project string, state bool) ([]incus.Instance, error) {
	if s.stall {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return s.fakeIncus.ListInstances(ctx, project, state)
}

// While a member is lost, a list that stalls gives way to the last one
// within lostListWait; with no member lost it is waited for.
func TestListProjectFallsBackWhileAMemberIsLost(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{{Name: "web-1", Status: "Running", Location: "m1"}, {Name: "web-2", Status: "Running", Location: "m2"}}
	inc := &stallingIncus{fakeIncus: f}
	lost := lostSet{}
	a := &Applier{Incus: inc, Members: lost, Log: logr.Discard()}
	got, cached, err := a.listProject(context.Background(), "p", false)
	if err != nil || cached || len(got) != 2 {
		t.Fatalf("first list: %v %v %v", got, cached, err)
	}
	inc.stall, lost["m2"] = true, true
	start := time.Now()
	got, cached, err = a.listProject(context.Background(), "p", false)
	if err != nil || !cached || len(got) != 2 {
		t.Fatalf("stalled list with m2 lost: %v %v %v", got, cached, err)
	}
	if took := time.Since(start); took > lostListWait+time.Second {
		t.Fatalf("took %v", took)
	}
	// No member lost: the pass's own deadline rules.
	delete(lost, "m2")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := a.listProject(ctx, "p", false); err == nil {
		t.Fatal("a stalled list with no member lost returned no error")
	}
}

// The lost-member error is said once, whatever wraps it.
func TestLostError(t *testing.T) {
	first := lostError("p", "lb-1", "m2", nil)
	if got := first.Error(); got != "instance p/lb-1: its cluster member m2 is lost (it does not answer)" {
		t.Errorf("got %q", got)
	}
	if again := lostError("p", "lb-1", "m2", first); again != first {
		t.Errorf("said twice: %q", again)
	}
	wrapped := lostError("p", "lb-1", "m2", context.Canceled)
	if !errors.Is(wrapped, errMemberLost) || !errors.Is(wrapped, context.Canceled) {
		t.Errorf("%v lost a cause", wrapped)
	}
}
