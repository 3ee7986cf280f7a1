package controller

import (
	"strings"
	"testing"
	"time"
)

func TestDecidePrune(t *testing.T) {
	const grace = 15 * time.Minute
	cases := []struct {
		name        string
		owner       string
		orphanedFor time.Duration
		grace       time.Duration
		specsLeft   int
		delete      bool
		wait        time.Duration
		reason      string // a fragment of Reason
	}{
		{"no owner key", "", time.Hour, grace, 3, false, 0, "carries no user.incuslb.lb key"},
		{"owned by another LB", "other", time.Hour, grace, 3, false, 0, `belongs to LoadBalancer "other"`},
		{"another owner, no specs left", "other", time.Hour, grace, 0, false, 0, `belongs to LoadBalancer "other"`},
		{"every LB removed at once", "edge", time.Hour, grace, 0, false, 0, "every LoadBalancer was removed from the specs at once (2 orphans"},
		{"every LB removed, within grace", "edge", 0, grace, 0, false, 0, "every LoadBalancer was removed"},
		{"just removed", "edge", 0, grace, 3, false, grace, "once it has been gone for 15m0s"},
		{"within grace", "edge", 10 * time.Minute, grace, 3, false, 5 * time.Minute, "in 5m0s"},
		{"grace just over", "edge", grace, grace, 3, true, 0, "removed from the specs 15m0s ago"},
		{"long gone", "edge", 48 * time.Hour, grace, 1, true, 0, "grace 15m0s"},
		{"no grace", "edge", 0, 0, 1, true, 0, "grace 0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := DecidePrune("edge", tc.owner, tc.orphanedFor, tc.grace, tc.specsLeft, 2)
			if got.Delete != tc.delete || got.Wait != tc.wait {
				t.Errorf("got Delete %v Wait %v, want Delete %v Wait %v", got.Delete, got.Wait, tc.delete, tc.wait)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", got.Reason, tc.reason)
			}
		})
	}
}
