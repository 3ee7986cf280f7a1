package lease

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Record is the lease as stored.
type Record struct {
	Holder     string        // identity of the holder; "" when released
	Generation int64         // bumped by every acquisition
	Acquired   time.Time     // when the holder acquired it
	Renewed    time.Time     // when the holder last renewed it (its clock)
	Duration   time.Duration // how long a renewal holds
}

// Keys are the config keys a Record is stored under.
const (
	KeyHolder     = "user.incuslb.lease.holder"
	KeyGeneration = "user.incuslb.lease.generation"
	KeyAcquired   = "user.incuslb.lease.acquired"
	KeyRenewed    = "user.incuslb.lease.renewed"
	KeyDuration   = "user.incuslb.lease.duration"
)

// ToConfig writes r as config keys.
func (r Record) ToConfig() map[string]string {
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return map[string]string{
		KeyHolder: r.Holder, KeyGeneration: strconv.FormatInt(r.Generation, 10),
		KeyAcquired: ts(r.Acquired), KeyRenewed: ts(r.Renewed), KeyDuration: r.Duration.String(),
	}
}

// FromConfig reads a Record from config keys; missing or bad values read
// as zero (a record nobody holds).
func FromConfig(cfg map[string]string) Record {
	var r Record
	r.Holder = cfg[KeyHolder]
	r.Generation, _ = strconv.ParseInt(cfg[KeyGeneration], 10, 64)
	r.Acquired, _ = time.Parse(time.RFC3339Nano, cfg[KeyAcquired])
	r.Renewed, _ = time.Parse(time.RFC3339Nano, cfg[KeyRenewed])
	r.Duration, _ = time.ParseDuration(cfg[KeyDuration])
	return r
}

// ErrConflict is a Store update that lost to another writer.
var ErrConflict = errors.New("the lease changed since it was read")

// ErrNotFound is a Store with no record yet.
var ErrNotFound = errors.New("no lease record")

// Store keeps the record. Update and Create are compare-and-swap.
type Store interface {
	// Get returns the record and its version (an ETag).
	Get(ctx context.Context) (Record, string, error)
	// Create makes the record; ErrConflict if it exists.
	Create(ctx context.Context, r Record) error
	// Update writes r if the record is still at version; else ErrConflict.
	Update(ctx context.Context, r Record, version string) error
}

// Timings are client-go's defaults: a lease held 15 s, renewed every 2 s,
// given up when it could not be renewed for 10 s.
var (
	DefaultDuration      = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetry         = 2 * time.Second
)

// Action is what one round decides.
type Action int

// The actions of a round.
const (
	Follow  Action = iota // another holder's lease is live: wait
	Renew                 // we hold it: renew
	Acquire               // free or expired: try to take it
)

// Decide is one round of the election, pure: r is the record as read,
// seen is when this process first saw r in its current form (its
// Generation, Holder and Renewed), now is this process's clock.
func Decide(r Record, seen, now time.Time, me string) Action {
	switch {
	case r.Holder == me && r.Holder != "":
		return Renew
	case r.Holder == "":
		return Acquire
	case now.Sub(seen) >= r.Duration:
		return Acquire // the holder has not renewed within its lease
	}
	return Follow
}

// Elector takes part in the election.
type Elector struct {
	Store    Store
	Identity string
	Log      logr.Logger
	// Duration, RenewDeadline and Retry default to DefaultDuration,
	// DefaultRenewDeadline and DefaultRetry.
	Duration, RenewDeadline, Retry time.Duration
	// OnChange is called (from the elector's goroutine) when this process
	// starts or stops leading, with the generation it leads under.
	OnChange func(leading bool, generation int64)
	// Now is the clock; default time.Now.
	Now func() time.Time

	mu         sync.Mutex
	leading    bool
	generation int64
	observed   Record
	seen       time.Time // when observed was first seen in its form
	renewed    time.Time // our last successful renewal (our clock)
}

// Leading reports whether this process leads, and under which generation.
func (e *Elector) Leading() (bool, int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading, e.generation
}

// Observed is the record as last read.
func (e *Elector) Observed() Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.observed
}

func (e *Elector) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Elector) defaults() {
	if e.Duration <= 0 {
		e.Duration = DefaultDuration
	}
	if e.RenewDeadline <= 0 {
		e.RenewDeadline = DefaultRenewDeadline
	}
	if e.Retry <= 0 {
		e.Retry = DefaultRetry
	}
}

// Validate checks the timings: a leader must give up before a follower
// may take over.
func (e *Elector) Validate() error {
	e.defaults()
	switch {
	case e.Identity == "":
		return errors.New("the lease needs an identity")
	case e.RenewDeadline >= e.Duration:
		return fmt.Errorf("the renew deadline (%v) must be shorter than the lease (%v)", e.RenewDeadline, e.Duration)
	case e.Retry >= e.RenewDeadline:
		return fmt.Errorf("the retry period (%v) must be shorter than the renew deadline (%v)", e.Retry, e.RenewDeadline)
	}
	return nil
}

// Run takes part until ctx ends; a leader then releases the lease, so
// that another takes over at once rather than after the lease expires.
func (e *Elector) Run(ctx context.Context) {
	e.defaults()
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			e.release()
			return
		case <-tick.C:
		}
		e.round(ctx)
		// Jittered, as client-go does: Incus checks an If-Match and then
		// writes, not atomically, so two candidates that try in the same
		// instant could both win. Apart in time, the second sees the
		// first's write.
		tick.Reset(e.Retry + rand.N(e.Retry/5+1))
	}
}

// round reads the record and renews, acquires or follows.
func (e *Elector) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, e.Retry)
	defer cancel()
	r, version, err := e.Store.Get(rctx)
	if errors.Is(err, ErrNotFound) {
		err = e.Store.Create(rctx, Record{})
		if err == nil || errors.Is(err, ErrConflict) {
			r, version, err = e.Store.Get(rctx)
		}
	}
	now := e.now()
	if err != nil {
		e.Log.Error(err, "reading the lease")
		e.checkDeadline(now)
		return
	}
	e.mu.Lock()
	if r.Holder != e.observed.Holder || r.Generation != e.observed.Generation || !r.Renewed.Equal(e.observed.Renewed) || e.seen.IsZero() {
		e.observed, e.seen = r, now
	}
	seen := e.seen
	e.mu.Unlock()
	action := Decide(r, seen, now, e.Identity)
	switch action {
	case Follow:
		e.set(false, 0)
		return
	case Renew:
		r.Renewed, r.Duration = now, e.Duration
	case Acquire:
		r = Record{Holder: e.Identity, Generation: r.Generation + 1, Acquired: now, Renewed: now, Duration: e.Duration}
	}
	if err := e.Store.Update(rctx, r, version); err != nil {
		if !errors.Is(err, ErrConflict) {
			e.Log.Error(err, "writing the lease")
		}
		e.checkDeadline(now)
		return
	}
	if action == Acquire && !e.confirm(rctx, r) {
		return
	}
	e.mu.Lock()
	e.observed, e.seen, e.renewed = r, now, now
	e.mu.Unlock()
	e.set(true, r.Generation)
}

// confirmDelay is how long an acquirer waits before it reads its write
// back. Incus checks an If-Match and then writes, not atomically: a
// candidate whose check passed in the same instant as ours may still be
// writing when our write returns. Its write lands within a database
// transaction, milliseconds; the last write wins, and reading back after
// both tells each candidate whether it won.
func (e *Elector) confirmDelay() time.Duration {
	return min(e.Retry/10, 250*time.Millisecond)
}

// confirm reads an acquisition back after confirmDelay and reports
// whether the record is still ours; if not, this process follows the
// record it read.
func (e *Elector) confirm(ctx context.Context, mine Record) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(e.confirmDelay()):
	}
	r, _, err := e.Store.Get(ctx)
	if err != nil {
		e.Log.Error(err, "reading the lease back after acquiring it")
		return false // the next round tries again
	}
	if r.Holder == mine.Holder && r.Generation == mine.Generation {
		return true
	}
	e.Log.Info("another candidate acquired the lease in the same instant", "holder", r.Holder, "generation", r.Generation)
	e.mu.Lock()
	e.observed, e.seen = r, e.now()
	e.mu.Unlock()
	return false
}

// checkDeadline makes a leader that could not renew for RenewDeadline
// stop leading (before its lease expires for the others).
func (e *Elector) checkDeadline(now time.Time) {
	e.mu.Lock()
	lapsed := e.leading && now.Sub(e.renewed) >= e.RenewDeadline
	e.mu.Unlock()
	if lapsed {
		e.Log.Info("could not renew the lease in time: no longer leading", "deadline", e.RenewDeadline.String())
		e.set(false, 0)
	}
}

func (e *Elector) set(leading bool, generation int64) {
	e.mu.Lock()
	changed := e.leading != leading || (leading && e.generation != generation)
	e.leading, e.generation = leading, generation
	e.mu.Unlock()
	if !changed {
		return
	}
	if leading {
		e.Log.Info("leading", "identity", e.Identity, "generation", generation)
	} else {
		e.Log.Info("following", "identity", e.Identity)
	}
	if e.OnChange != nil {
		e.OnChange(leading, generation)
	}
}

// release gives the lease up at shutdown (with a short deadline of its own).
func (e *Elector) release() {
	leading, _ := e.Leading()
	if !leading {
		return
	}
	e.set(false, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, version, err := e.Store.Get(ctx)
	if err != nil || r.Holder != e.Identity {
		return
	}
	r.Holder, r.Renewed = "", time.Time{}
	if err := e.Store.Update(ctx, r, version); err != nil {
		e.Log.Error(err, "releasing the lease")
	}
}
