package controller

import (
	"fmt"
	"time"
)

// PruneDecision is what to do with the instance of an orphaned
// LoadBalancer when pruning is on: delete it now, look again after Wait, or
// leave it for good. Reason says why, for the log and the status.
type PruneDecision struct {
	Delete bool
	Wait   time.Duration // > 0: not yet; reconcile again after Wait
	Reason string
}

// DecidePrune is the safety policy for deleting the instance of the
// LoadBalancer called name, removed from the specs orphanedFor ago. It does
// no I/O; the caller reads the facts and acts on the decision.
//
// owner is the instance's user.incuslb.lb key ("" when it has none).
// specsLeft is how many LoadBalancers the specs still hold, valid or not,
// and orphans how many were removed (Store.Counts). grace is how long an
// orphan must stay removed before its instance goes; it is meant to be a
// few resyncs, so that a spec moved between files, a revert or a flapping
// checkout never costs an instance.
//
// The rules, in order:
//   - an instance that name does not own is never deleted: it belongs to
//     another LoadBalancer, or carries no owner key;
//   - when the specs hold no LoadBalancer at all (an empty spec directory,
//     a broken checkout), nothing is deleted;
//   - before the grace period is over, wait for the rest of it;
//   - otherwise delete.
func DecidePrune(name, owner string, orphanedFor, grace time.Duration, specsLeft, orphans int) PruneDecision {
	switch {
	case owner == "":
		return PruneDecision{Reason: fmt.Sprintf("the instance carries no %s key, so LoadBalancer %q does not own it; it is never deleted", KeyLB, name)}
	case owner != name:
		return PruneDecision{Reason: fmt.Sprintf("the instance belongs to LoadBalancer %q, not %q; it is never deleted", owner, name)}
	case specsLeft == 0:
		return PruneDecision{Reason: fmt.Sprintf("every LoadBalancer was removed from the specs at once (%d orphans, none left): "+
			"an empty spec directory or a broken checkout is not taken as an order to delete; restore a spec, or delete the instance by hand", orphans)}
	case orphanedFor < grace:
		wait := grace - orphanedFor
		return PruneDecision{Wait: wait, Reason: fmt.Sprintf("removed from the specs %v ago; the instance is deleted once it has been gone for %v (in %v)",
			orphanedFor.Round(time.Second), grace, wait.Round(time.Second))}
	}
	return PruneDecision{Delete: true, Reason: fmt.Sprintf("removed from the specs %v ago (grace %v)", orphanedFor.Round(time.Second), grace)}
}
