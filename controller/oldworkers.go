package controller

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/incuslb/incuslb/specs"
)

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
