package lease

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	held := Record{Holder: "b", Generation: 3, Renewed: t0, Duration: 15 * time.Second}
	for _, c := range []struct {
		name      string
		r         Record
		seen, now time.Time
		want      Action
	}{
		{"nobody holds it", Record{}, t0, t0, Acquire},
		{"released", Record{Generation: 3, Duration: time.Second}, t0, t0, Acquire},
		{"we hold it", Record{Holder: "a", Generation: 2}, t0, t0, Renew},
		{"another holds it, renewed just now", held, t0, t0.Add(time.Second), Follow},
		{"another holds it, 14.9 s without a change", held, t0, t0.Add(14900 * time.Millisecond), Follow},
		{"another's lease expired on our clock", held, t0, t0.Add(15 * time.Second), Acquire},
		// The holder's own renew time is far in the past (its clock is
		// behind ours): what counts is when we saw the record change.
		{"skewed holder clock", Record{Holder: "b", Renewed: t0.Add(-time.Hour), Duration: 15 * time.Second}, t0, t0.Add(time.Second), Follow},
	} {
		if got := Decide(c.r, c.seen, c.now, "a"); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	r := Record{Holder: "h/1", Generation: 7, Acquired: time.Unix(10, 5).UTC(), Renewed: time.Unix(20, 0).UTC(), Duration: 15 * time.Second}
	if got := FromConfig(r.ToConfig()); got != r {
		t.Errorf("%+v != %+v", got, r)
	}
	if got := FromConfig(map[string]string{KeyGeneration: "x"}); got != (Record{}) {
		t.Errorf("bad keys read as %+v", got)
	}
}

// memStore is a Store in memory with versions.
type memStore struct {
	mu      sync.Mutex
	r       Record
	version int
	exists  bool
	racy    int // writes to accept at a stale version

	together *sync.WaitGroup // when set, the first two reads wait for each other
	gets     int
}

func (s *memStore) Get(context.Context) (Record, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.together != nil && s.gets < 2 {
		// Both candidates read before either writes.
		s.gets++
		r, v := s.r, strconv.Itoa(s.version)
		s.mu.Unlock()
		s.together.Done()
		s.together.Wait()
		s.mu.Lock()
		return r, v, nil
	}
	if !s.exists {
		return Record{}, "", ErrNotFound
	}
	return s.r, strconv.Itoa(s.version), nil
}

func (s *memStore) Create(context.Context, Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exists {
		return ErrConflict
	}
	s.exists = true
	return nil
}

func (s *memStore) Update(_ context.Context, r Record, version string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if version != strconv.Itoa(s.version) {
		if s.racy == 0 {
			return ErrConflict
		}
		// As Incus can: the If-Match was checked before another writer's
		// write landed, so this write lands too.
		s.racy--
	}
	s.r, s.version = r, s.version+1
	return nil
}

// TestElection drives two electors round by round on one clock: one
// leads; when it stops renewing (paused), the other takes over once the
// lease expired on its clock, under a new generation; the paused one,
// back, follows.
func TestElection(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	clock := func() time.Time { return now }
	store := &memStore{}
	mk := func(id string) *Elector {
		e := &Elector{Store: store, Identity: id, Log: logr.Discard(), Now: clock}
		e.defaults()
		return e
	}
	a, b := mk("a"), mk("b")
	ctx := context.Background()
	a.round(ctx)
	b.round(ctx)
	if l, g := a.Leading(); !l || g != 1 {
		t.Fatalf("a: leading %v gen %d", l, g)
	}
	if l, _ := b.Leading(); l {
		t.Fatal("b leads too")
	}
	// a renews every 2 s for a while: b keeps following.
	for i := 0; i < 10; i++ {
		now = now.Add(2 * time.Second)
		a.round(ctx)
		b.round(ctx)
	}
	if l, _ := b.Leading(); l {
		t.Fatal("b took a renewed lease")
	}
	// a pauses: b takes over only after 15 s without a change.
	for i := 0; i < 7; i++ {
		now = now.Add(2 * time.Second)
		b.round(ctx)
		if l, _ := b.Leading(); l {
			t.Fatalf("b took over after %d s", 2*(i+1))
		}
	}
	now = now.Add(2 * time.Second)
	b.round(ctx)
	if l, g := b.Leading(); !l || g != 2 {
		t.Fatalf("b after 16 s: leading %v gen %d", l, g)
	}
	// a wakes: it still thinks it leads until its round, which sees b.
	a.round(ctx)
	if l, _ := a.Leading(); l {
		t.Fatal("a leads beside b")
	}
	if store.r.Holder != "b" || store.r.Generation != 2 {
		t.Fatalf("record %+v", store.r)
	}
	// b shuts down: it releases, and a takes over at its next round.
	b.release()
	a.round(ctx)
	if l, g := a.Leading(); !l || g != 3 {
		t.Fatalf("a after b's release: leading %v gen %d", l, g)
	}
}

// TestAcquireRace: two candidates read the free lease and both writes
// land (Incus's If-Match check and write are not atomic). Each reads its
// write back: only the last writer leads.
func TestAcquireRace(t *testing.T) {
	store := &memStore{exists: true, racy: 1, together: &sync.WaitGroup{}}
	store.together.Add(2)
	mk := func(id string) *Elector {
		e := &Elector{Store: store, Identity: id, Log: logr.Discard()}
		e.defaults()
		return e
	}
	a, b := mk("a"), mk("b")
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, e := range []*Elector{a, b} {
		wg.Add(1)
		go func() { defer wg.Done(); e.round(ctx) }()
	}
	wg.Wait()
	la, _ := a.Leading()
	lb, _ := b.Leading()
	if la == lb {
		t.Fatalf("a leads %v, b leads %v (record %+v)", la, lb, store.r)
	}
	if winner := map[bool]string{true: "a", false: "b"}[la]; store.r.Holder != winner {
		t.Fatalf("%s leads, the record says %+v", winner, store.r)
	}
}

func TestRenewDeadline(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	store := &memStore{}
	e := &Elector{Store: store, Identity: "a", Log: logr.Discard(), Now: func() time.Time { return now }}
	e.defaults()
	e.round(context.Background())
	if l, _ := e.Leading(); !l {
		t.Fatal("not leading")
	}
	// The store stops answering: after 10 s the leader steps down, before
	// its 15 s lease runs out for the others.
	e.Store = failing{}
	for i := 1; i <= 5; i++ {
		now = now.Add(2 * time.Second)
		e.round(context.Background())
	}
	if l, _ := e.Leading(); l {
		t.Fatal("still leading 10 s without a renewal")
	}
}

type failing struct{}

func (failing) Get(context.Context) (Record, string, error) {
	return Record{}, "", context.DeadlineExceeded
}
func (failing) Create(context.Context, Record) error         { return context.DeadlineExceeded }
func (failing) Update(context.Context, Record, string) error { return context.DeadlineExceeded }

func TestValidate(t *testing.T) {
	if err := (&Elector{Identity: "a", Duration: 5 * time.Second, RenewDeadline: 10 * time.Second}).Validate(); err == nil {
		t.Error("a renew deadline past the lease")
	}
	if err := (&Elector{Identity: "a"}).Validate(); err != nil {
		t.Error(err)
	}
}
