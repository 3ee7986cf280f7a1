// Package controller converges HAProxy containers on LoadBalancer specs.
//
// Applier.Apply is one pass for one LoadBalancer: ensure the instance,
// discover members, render, and apply the difference (push, validate with
// haproxy -c, swap atomically, reload, confirm). It rebuilds the whole
// desired state on every pass and compares it with what runs; it never
// patches state from the content of an event.
//
// It reaches Incus through the narrow interfaces declared here, which
// *incus.Client satisfies, and HAProxy through haproxy.Runtime.
package controller
