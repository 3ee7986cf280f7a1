// Package specs is incuslb's spec API: the LoadBalancer object an operator
// writes, its defaults and its validation.
//
// It owns parsing (strict: an unknown field is an error naming its path),
// defaulting (the seed role's values) and validation (every problem at once,
// each as a field path and a reason). Any string that ends up in haproxy.cfg
// is validated here against a character set that cannot inject config.
//
// It must not talk to Incus or HAProxy; the only I/O it does is reading spec
// files and, in ValidateFiles, the certificate files a spec names.
package specs
