// Package keepalived renders the keepalived.conf of one replica of a
// highly available load balancer, and reads which replica holds the
// virtual address.
//
// It owns the VRRP side of a pair: VRRPv3 (sub-second advertisements),
// unicast to the other replicas (so it works where multicast does not),
// every replica starting as a backup with nopreempt (a replica that comes
// back does not take the address back: no flapping), and the address given
// up by a replica whose HAProxy is not running (a check script).
//
// It must not do I/O or know Incus: Render is a pure function of Config,
// and the controller pushes, tests (keepalived -t) and reloads the file.
package keepalived
