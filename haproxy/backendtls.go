package haproxy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/incuslb/incuslb/specs"
)

// Mutual TLS to a pool's servers: its client certificate and its CA
// bundle live in the container at paths derived from the LB and the pool
// (BackendCertPath, BackendCAPath), which the pool's default-server names
// (crt, ca-file). HAProxy keeps both in memory under those paths, so a
// changed file is swapped through the runtime API (set ssl cert / set ssl
// ca-file, then commit) with no reload; new connections to the servers
// use the new one.

// BackendCertPath is where pool's client certificate lives in the container.
func BackendCertPath(lb *specs.LoadBalancer, opts Options, pool string) string {
	return certDir(opts) + "/" + lb.Metadata.Name + ".pool-" + pool + ".client.pem"
}

// BackendCAPath is where pool's CA bundle lives in the container.
func BackendCAPath(lb *specs.LoadBalancer, opts Options, pool string) string {
	return certDir(opts) + "/" + lb.Metadata.Name + ".pool-" + pool + ".ca.pem"
}

// BackendFile is one backendTLS file as the LB instance holds it.
type BackendFile struct {
	Path string // in the container
	CA   bool   // a CA bundle (ca-file); else a client certificate (crt)
	PEM  []byte // as specs.LoadBackendFiles normalises it
}

// BackendFiles places the pools' backendTLS files at their paths.
func BackendFiles(lb *specs.LoadBalancer, opts Options, files []specs.BackendFile) []BackendFile {
	out := make([]BackendFile, len(files))
	for i, f := range files {
		ca := f.Kind == specs.BackendCA
		path := BackendCertPath(lb, opts, f.Pool)
		if ca {
			path = BackendCAPath(lb, opts, f.Pool)
		}
		out[i] = BackendFile{Path: path, CA: ca, PEM: f.PEM}
	}
	return out
}

// backendTLSParams are the default-server parameters of a pool's
// backendTLS.
func backendTLSParams(lb *specs.LoadBalancer, p *specs.Pool, opts Options) string {
	t := p.BackendTLS
	var b strings.Builder
	if t.Verify == specs.VerifyNone {
		b.WriteString(" ssl verify none")
	} else {
		// verifyhost: the chain alone would let any certificate from
		// a trusted CA stand in for the server.
		host := t.VerifyHost
		if host == "" {
			host = t.SNI
		}
		ca := "@system-ca"
		if t.CA != "" {
			ca = BackendCAPath(lb, opts, p.Name)
		}
		fmt.Fprintf(&b, " ssl verify required ca-file %s verifyhost %s", ca, host)
	}
	if t.ClientCertificateFile != "" {
		b.WriteString(" crt " + BackendCertPath(lb, opts, p.Name))
	}
	if t.SNI != "" {
		fmt.Fprintf(&b, " sni str(%s) check-sni %s", t.SNI, t.SNI)
	}
	return b.String()
}

// ParseCAFile parses the answer of `show ssl ca-file PATH`: the SHA-1
// fingerprints of its certificates, in order. An answer without a
// "Filename:" line is HAProxy's error (no CA file loaded under that name).
func ParseCAFile(out string) ([]string, error) {
	var sums []string
	named := false
	for _, l := range lines(out) {
		label, value, ok := strings.Cut(l, ":")
		switch {
		case !ok:
		case label == "Filename":
			named = true
		case label == "SHA1 FingerPrint":
			sums = append(sums, strings.ToUpper(strings.ReplaceAll(strings.TrimSpace(value), ":", "")))
		}
	}
	if !named {
		return nil, fmt.Errorf("show ssl ca-file: %q", firstLine(capped(out)))
	}
	return sums, nil
}

// CAFileSHA1 is the SHA-1 fingerprints of the certificates HAProxy holds
// under CA file path, joined with ",": "" when it holds none under that
// name.
func (r *Runtime) CAFileSHA1(ctx context.Context, path string) (string, error) {
	out, err := r.Command(ctx, "show ssl ca-file "+path)
	if err != nil {
		return "", err
	}
	sums, err := ParseCAFile(out)
	if err != nil {
		return "", nil // not loaded under that name
	}
	return CASet(sums), nil
}

// CASet is the fingerprint of a set of CA certificates: their SHA-1s,
// sorted, without repeats, joined with ",". HAProxy lists a CA file's
// certificates in its store's order (OpenSSL sorts them by subject and
// drops duplicates), not the file's.
func CASet(sums []string) string {
	sums = slices.Clone(sums)
	slices.Sort(sums)
	return strings.Join(slices.Compact(sums), ",")
}

// SetCAFile replaces the CA certificates HAProxy holds under path (a CA
// file a config loaded): set ssl ca-file, then commit; aborted when
// HAProxy refuses either.
func (r *Runtime) SetCAFile(ctx context.Context, path string, pemData []byte) error {
	return r.setSSL(ctx, "ca-file", path, pemData)
}
