package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/lease"
)

// leaseFlags are the leader election's flags (run) and the lease apply
// looks at.
type leaseFlags struct {
	profile                        *string
	identity                       *string
	duration, renewDeadline, retry *time.Duration
}

func addLeaseFlags(fs *flag.FlagSet, withTimings bool) leaseFlags {
	host, _ := os.Hostname()
	f := leaseFlags{
		profile: fs.String("lease", "incuslb-lease", "Incus profile (default project) holding the leader lease: of several controllers with the same --lease, one leads and the others wait; empty: no election"),
	}
	if withTimings {
		f.identity = fs.String("lease-identity", fmt.Sprintf("%s/%d", host, os.Getpid()), "this controller's name in the lease")
		f.duration = fs.Duration("lease-duration", lease.DefaultDuration, "how long a leader's lease holds without a renewal (others take over after it)")
		f.renewDeadline = fs.Duration("lease-renew-deadline", lease.DefaultRenewDeadline, "a leader that could not renew for this long stops leading")
		f.retry = fs.Duration("lease-retry", lease.DefaultRetry, "how often the lease is renewed or tried")
	}
	return f
}

// elector makes the election of run, or nil with --lease "".
func (f leaseFlags) elector(c *incus.Client, log logr.Logger) (*lease.Elector, error) {
	if *f.profile == "" {
		return nil, nil
	}
	el := &lease.Elector{Store: &controller.LeaseStore{Incus: c, Profile: *f.profile}, Identity: *f.identity, Log: log.WithName("lease"),
		Duration: *f.duration, RenewDeadline: *f.renewDeadline, Retry: *f.retry}
	if err := el.Validate(); err != nil {
		return nil, usageErrorf("--lease: %v", err)
	}
	return el, nil
}

// exportLease keeps the lease metric current until ctx ends.
func exportLease(ctx context.Context, el *lease.Elector, m *controller.Metrics) {
	t := time.NewTicker(el.Retry)
	defer t.Stop()
	for {
		r := el.Observed()
		m.SetLeaseHolder(r.Holder, r.Generation, r.Holder == el.Identity && r.Holder != "")
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// liveHolder returns the holder of a lease that is still live by this
// host's clock ("" when none): apply refuses to write beside it.
func liveHolder(ctx context.Context, c *incus.Client, profile string) (lease.Record, error) {
	if profile == "" {
		return lease.Record{}, nil
	}
	r, _, err := (&controller.LeaseStore{Incus: c, Profile: profile}).Get(ctx)
	if errors.Is(err, lease.ErrNotFound) {
		return lease.Record{}, nil
	}
	if err != nil {
		return lease.Record{}, err
	}
	if r.Holder == "" || time.Since(r.Renewed) >= r.Duration {
		return lease.Record{}, nil
	}
	return r, nil
}
