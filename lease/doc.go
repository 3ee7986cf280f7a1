// Package lease elects one leader among several incuslb controllers
// through a lease record stored in Incus, the way client-go's leader
// election does with a Kubernetes Lease.
//
// It owns the lease's rules: the record (holder, generation, when it was
// acquired and last renewed, for how long), the decision of one round
// (Decide: a pure function, table-tested), and the loop that renews or
// tries to acquire it every retry period. Writes are compare-and-swap: a
// Store update carries the ETag of the record it read and fails with
// ErrConflict when another writer came first (Incus answers 412). Expiry
// is judged on this process's own clock, from when it last saw the record
// change (not from the renew time the holder wrote), so clock skew between
// hosts does not shorten a lease.
//
// Every acquisition bumps the generation; the controller writes it with
// everything it writes, so that a paused old leader cannot overwrite a new
// one (see controller's fencing). It must not know Incus beyond Store.
package lease
