// Package haproxy turns a LoadBalancer spec and the current members of its
// pools into haproxy.cfg, and (runtime.go) speaks HAProxy's runtime API.
//
// Rendering is pure: Render is a function of a defaulted, valid spec and a
// Layout (which member sits in which server slot). It does no I/O and its
// output is deterministic: the same input gives the same bytes.
//
// Selector pools get pre-allocated server slots ("srv1".."srvN"): members
// fill them in a stable order (Assign keeps every member in the slot it had),
// and unused slots are parked in maintenance at 127.0.0.1:1, so that members
// can join and leave through the runtime API without a reload.
//
// It knows nothing of Incus.
package haproxy
