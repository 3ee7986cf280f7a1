// Package controller converges HAProxy containers on LoadBalancer specs.
//
// One pass (Applier.Apply, pass.go) is a pipeline:
//
//   - Observe (observe.go, discover.go): the LB instance and its owner key,
//     the files in it (a cache of what should run), what HAProxy actually
//     runs (the hash of the config its worker loaded, the live server table,
//     the served certificate, the master's reload history), and the members
//     Incus has for each selector pool. Reading writes nothing.
//   - Plan (plan.go): a pure function of the spec and the observation: the
//     desired config, a reload and its reason (ReloadReason, a small enum),
//     or the slot changes to make through the runtime API (slots.go: joins,
//     drains, evictions, parks; weights.go: the members' weights from
//     their weight labels and the pool's canary split, runtime-only, so
//     never a reload). Table-tested.
//   - Execute (execute.go, reload.go, instance.go): create, adopt or start
//     the instance; runtime API changes; or stage, check with haproxy -c,
//     rename and reload through the master CLI, confirmed by HAProxy itself;
//     ratecarry.go keeps the rate limits' counts across that reload.
//   - Record (record.go): the pass's one status write, on an instance this
//     LB owns, never the owner key.
//
// A pair (spec.highAvailability, pair.go) is that pass once per replica,
// the primary (the holder of the virtual address) first: its plan decides
// the slots and the others are pinned to them (pairPeers names the
// replicas to each other, for their shared rate-limit tables); then vrrp.go makes each
// replica's keepalived run the config the keepalived package renders, and
// notes the holder. leader.go is the election's side of a pass: the lease
// store (an Incus profile) and the fence (a pass of a controller that does
// not lead, or that finds a newer leader's generation on the instance,
// writes nothing). members.go finds lost cluster members before Incus
// does (MemberWatch): their instances leave their pools, and no pass waits
// on them.
//
// Certificates: certs.go observes, plans and applies them (runtime API, or
// staged for a reload); desiredcerts.go says which a pass serves (files,
// then ACME, else a self-signed placeholder); certstatus.go describes them.
// backendcerts.go does the same for the pools' backendTLS files (client
// certificate, CA bundle): swapped through the runtime API, or staged.
// acme.go (ACMEManager; acmeorder.go, one order) is the one owner of ACME certificates: it orders
// and renews them outside the passes, through package acme, and answers
// HTTP-01 through the LB's HAProxy map (acmeresponder.go); a pass only
// reads what it holds and never waits on the CA.
//
// A dry run is a pass without Execute and Record. runtimeapi.go picks the
// route to HAProxy's sockets (host-side proxy device, or exec in the
// instance); neighbours.go clears the LB's stale neighbour entries of
// joining addresses. The long-running side is reconcile.go (the Reconciler rules),
// lbreconciler.go, queue.go, runner.go (runnergit.go), store.go (the one owner of the
// specs), gitsource.go (gitcheck.go: what it refuses; redact.go: credentials
// out of logs) and webhook.go; prune.go is the policy for deleting
// the instance of a removed LoadBalancer.
//
// It must never touch an instance whose user.incuslb.lb key names another
// LoadBalancer, nor adopt one without that key unless the spec asks. It
// reaches Incus only through the narrow interfaces declared here, which
// *incus.Client satisfies, and HAProxy only through haproxy.Runtime.
package controller
