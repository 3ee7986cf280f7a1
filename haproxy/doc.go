// Package haproxy turns a LoadBalancer spec and the current members of its
// pools into haproxy.cfg, and speaks HAProxy's runtime API and master CLI.
//
// It owns:
//   - rendering (render.go): Render is a pure function of a defaulted, valid
//     spec and a Layout (which member sits in which server slot); the same
//     input gives the same bytes;
//   - the config hash (confighash.go): every rendered config sets
//     INCUSLB_CONFIG_HASH, the hash of its own structure, so that the worker
//     that loaded it can say so (`show env`);
//   - the slot codec and the parked address (layout.go): selector pools get
//     pre-allocated slots "srv1".."srvN", members fill them in a stable order
//     (preferring slots that rested), unused slots are parked at 127.0.0.1:1,
//     so members join and leave through the runtime API without a reload;
//   - the slot states (runtime.go): a parked slot rests down with its checks
//     failing, so that the member that fills it is checked within downinter
//     and takes no request before it passed; a gone member's slot is
//     evicted (drained, at the parked address) before it is parked;
//   - mutual TLS to the servers (backendtls.go): where a pool's client
//     certificate and CA bundle live in the container, the crt and
//     ca-file parameters that name them, and their runtime swap (set ssl
//     cert / set ssl ca-file);
//   - the server-state file a reload carries drains and health states over
//     with (statefile.go);
//   - rate limits (ratelimit.go): a stick table per limit, the peers
//     section (the next worker through 127.0.0.1, or a pair's replicas at
//     their addresses), and the tables' carry across a reload where the
//     local peer does not do it in time (tables.go); header changes and
//     HSTS (headers.go); TCP listeners and pools (tcp.go); IPv6 binds
//     (bind.go);
//   - the runtime API client (runtime.go), the routes to a socket or to
//     a TCP service in the container (sockets.go: a unix socket here, or
//     the one perl client run through exec there), and the parsers of
//     HAProxy's answers (parse.go), golden-tested against HAProxy 2.6 and
//     3.0;
//   - the log ring (logring.go): HAProxy's log kept in its memory, read
//     and followed across reloads with `show events`.
//
// It must not know Incus: the sockets it talks to are given to it. Its
// parsers treat HAProxy's answers as untrusted input: bounded, never
// panicking, columns found by name.
package haproxy
