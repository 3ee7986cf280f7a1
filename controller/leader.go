package controller

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/lease"
)

// KeyLeaderGeneration is written on every LB instance with each status:
// the lease generation of the controller that wrote it. A controller that
// finds a higher one there no longer leads (a newer leader has written),
// and writes nothing.
const KeyLeaderGeneration = "user.incuslb.leader-generation"

// Leader is what a pass asks of the election: whether this process leads,
// and under which generation. *lease.Elector is one.
type Leader interface {
	Leading() (bool, int64)
}

// ErrNotLeader ends a pass of a controller that does not lead (any more).
var ErrNotLeader = errors.New("this controller does not hold the lease")

// fence returns this process's lease generation (0 without election), or
// ErrNotLeader; cfg, when given, is an LB instance's config: a generation
// recorded there that is newer than ours means a newer leader wrote it.
func (a *Applier) fence(cfg map[string]string) (int64, error) {
	if a.Leader == nil {
		return 0, nil
	}
	leading, gen := a.Leader.Leading()
	if !leading {
		return 0, ErrNotLeader
	}
	if theirs, err := strconv.ParseInt(cfg[KeyLeaderGeneration], 10, 64); err == nil && theirs > gen {
		return 0, fmt.Errorf("%w: a newer leader (lease generation %d, ours %d) has written this instance", ErrNotLeader, theirs, gen)
	}
	return gen, nil
}

// LeaseStore keeps the lease record in the config of an Incus profile of
// the default project (created on first use, with no devices: nothing uses
// it), with Incus's ETags for compare-and-swap.
type LeaseStore struct {
	Incus   *incus.Client
	Profile string
}

// leaseDescription marks the profile.
const leaseDescription = "incuslb's leader lease (config only; no instance uses this profile)"

// Get implements lease.Store.
func (s *LeaseStore) Get(ctx context.Context) (lease.Record, string, error) {
	cfg, etag, err := s.Incus.ProfileConfig(ctx, s.Profile)
	if errors.Is(err, incus.ErrNotFound) {
		return lease.Record{}, "", lease.ErrNotFound
	}
	if err != nil {
		return lease.Record{}, "", err
	}
	return lease.FromConfig(cfg), etag, nil
}

// Create implements lease.Store.
func (s *LeaseStore) Create(ctx context.Context, r lease.Record) error {
	err := s.Incus.CreateProfile(ctx, s.Profile, leaseDescription, r.ToConfig())
	if errors.Is(err, incus.ErrConflict) {
		return lease.ErrConflict
	}
	return err
}

// Update implements lease.Store.
func (s *LeaseStore) Update(ctx context.Context, r lease.Record, version string) error {
	err := s.Incus.UpdateProfileConfig(ctx, s.Profile, leaseDescription, r.ToConfig(), version)
	if errors.Is(err, incus.ErrConflict) {
		return lease.ErrConflict
	}
	return err
}
