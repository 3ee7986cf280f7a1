// Package keepalived renders the keepalived.conf of one replica of a
// highly available load balancer, and the script that hands the virtual
// address over before keepalived stops.
//
// It owns the VRRP side of a pair: VRRPv3 (sub-second advertisements),
// unicast to the other replicas (so it works where multicast does not),
// and the priorities. Every replica runs at the same priority, so one that
// comes back stays a backup (no flapping); a holder whose HAProxy is not
// running (a check script), or that is asked to hand over (a flag file
// keepalived watches), drops below its peers and a healthy peer preempts
// it. A VRRP master keeps the address until a higher one has taken it, so
// a planned handover leaves no instant with no holder.
//
// It must not do I/O or know Incus: Render and Handover are pure functions
// of Config; the controller pushes, tests (keepalived -t) and reloads.
package keepalived
