package controller

import (
	"context"
	"errors"
	"time"
)

// Request names the LoadBalancer to reconcile. It carries nothing else: the
// reconciler re-reads the spec, Incus and HAProxy every time, so that what
// triggered it does not matter (level-triggered).
type Request struct {
	Name string
}

// Result tells the loop when to look again.
type Result struct {
	// RequeueAfter > 0 runs the request again after this long, even though
	// the pass succeeded: something is under way (a member waiting for its
	// DHCP address, a member draining).
	RequeueAfter time.Duration
}

// Reconciler converges one LoadBalancer. The rules, as in
// controller-runtime's reconcile.Reconciler:
//
//   - Reconcile is called with a Request holding only the LB's name; it
//     reads the current spec, Incus and HAProxy itself, builds the whole
//     desired state and acts on the difference.
//   - It is never called twice at once for the same name; calls for
//     different names may run in parallel.
//   - Returning a nil error and a zero Result: done until the next trigger
//     (an Incus event, a spec change, or the periodic resync).
//   - Returning a Result with RequeueAfter: run again after that long.
//   - Returning an error: run again with exponential backoff per name (from
//     250ms, doubling, up to 2m); the backoff resets after a success.
//   - Returning an error wrapped by Terminal (an invalid spec): it is
//     reported, in the status and the log, and not retried; the next
//     change of the spec (or any other trigger) runs it again.
//   - Reconcile must be idempotent: any number of calls with nothing
//     changed in between change nothing.
type Reconciler interface {
	Reconcile(ctx context.Context, req Request) (Result, error)
}

// terminalError marks an error that retrying cannot fix.
type terminalError struct{ err error }

func (t terminalError) Error() string { return t.err.Error() }
func (t terminalError) Unwrap() error { return t.err }

// Terminal marks err as not worth retrying until something changes.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return terminalError{err}
}

// IsTerminal reports whether err was marked with Terminal.
func IsTerminal(err error) bool {
	var t terminalError
	return errors.As(err, &t)
}
