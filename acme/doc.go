// Package acme owns the ACME protocol side of incuslb's certificates: the
// account (its key and its registration), obtaining a certificate for a
// list of hosts, renewing it, the renewal schedule, and keeping that state
// on disk. It is built on lego (github.com/go-acme/lego/v5).
//
// It knows neither Incus nor HAProxy. An HTTP-01 challenge is answered by
// whoever implements Responder (the controller puts tokens into an HAProxy
// map through its runtime API); a DNS-01 challenge by a lego
// challenge.Provider handed in (one provider package, never lego's
// all-providers registry).
//
// State lives under Config.StateDir, directories 0700 and files 0600:
//
//	accounts/<hash of directory and email>/account.key   the account key (PEM)
//	accounts/<hash of directory and email>/account.json  the registration
//	certificates/<name>.pem   leaf, chain, then the private key (HAProxy's crt)
//	certificates/<name>.json  what was asked and got: hosts, serial, dates
//
// Files are written to a temporary file and renamed, so a reader sees the
// old or the new content, never half of it.
//
// Scheduling is pure (NextRenewal: two thirds of the lifetime, or a point
// inside the CA's ARI window), as are the error helpers (Reason for a metric
// label, RetryAfter, Backoff, RetryDelay); the Client does the protocol.
//
// Nothing here logs key material or puts it into an error: not the account
// key, not a certificate's private key, not an EAB HMAC key.
package acme
