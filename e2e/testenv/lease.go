package testenv

import (
	"strings"

	"github.com/incuslb/incuslb/lease"
)

// LeaseFromProfile reads the lease record out of `incus profile show` of
// the lease's profile ("" or an unreadable profile: no record).
func LeaseFromProfile(show string) lease.Record {
	cfg := map[string]string{}
	for _, l := range strings.Split(show, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ": ")
		if ok && strings.HasPrefix(k, "user.incuslb.lease.") {
			cfg[k] = strings.Trim(v, `"`)
		}
	}
	return lease.FromConfig(cfg)
}
