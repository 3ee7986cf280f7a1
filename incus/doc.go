// Package incus is everything incuslb says to Incus: listing instances with
// their labels and addresses, creating and starting instances, reading and
// writing files in them, running commands (whole, or streamed until the
// caller stops: ExecStream), updating config keys and devices,
// the cluster's members (placement), and a profile's config read and
// written by ETag compare-and-swap (the leader lease; ErrConflict).
//
// It returns plain data (Instance) and knows nothing of HAProxy. Callers
// declare the narrow interfaces they need; *Client satisfies them.
package incus
