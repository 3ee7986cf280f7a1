package haproxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/incuslb/incuslb/specs"
)

// Certificates in the container: certificate i of a LoadBalancer at
// CertPathN(i) (the first at CertPath, where the single certificate always
// lived), all listed in order in one crt-list file that the HTTPS bind
// loads. HAProxy picks a certificate by SNI among the names the
// certificates carry, and the first line's (the default) when none
// matches. A certificate's path follows its place in the spec, so a change
// of order or content is a `set ssl cert` on the same paths, and a longer
// or shorter list adds or deletes entries at the end.

// CertFile is one certificate as the LB instance holds it.
type CertFile struct {
	Path string // in the container
	PEM  []byte // chain then key, as specs.LoadCertificate normalises it
}

// CertPathN is where certificate i lives in the container.
func CertPathN(lb *specs.LoadBalancer, opts Options, i int) string {
	if i == 0 {
		return CertPath(lb, opts)
	}
	return certDir(opts) + "/" + lb.Metadata.Name + "-" + strconv.Itoa(i) + ".pem"
}

// CrtListPath is the crt-list file of the LoadBalancer's HTTPS bind.
func CrtListPath(lb *specs.LoadBalancer, opts Options) string {
	return certDir(opts) + "/" + lb.Metadata.Name + ".crt-list"
}

// ACMEChallengePrefix is the path under which HTTP-01 challenges come.
const ACMEChallengePrefix = "/.well-known/acme-challenge/"

// ACMEMapPath is the map of ACME HTTP-01 tokens to key authorizations that
// the HTTP frontend answers from (empty on disk: tokens live only in the
// running HAProxy, put there by `add map`).
func ACMEMapPath(lb *specs.LoadBalancer, opts Options) string {
	return certDir(opts) + "/" + lb.Metadata.Name + ".acme-challenge.map"
}

func certDir(opts Options) string {
	if opts.CertDir != "" {
		return opts.CertDir
	}
	return CertDir
}

// CertFiles places the certificates' PEMs (in spec order) at their paths.
func CertFiles(lb *specs.LoadBalancer, opts Options, pems [][]byte) []CertFile {
	out := make([]CertFile, len(pems))
	for i, p := range pems {
		out[i] = CertFile{Path: CertPathN(lb, opts, i), PEM: p}
	}
	return out
}

// CrtList is the content of the crt-list file that lists paths in order.
func CrtList(paths []string) []byte {
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(p)
		b.WriteByte('\n')
	}
	return []byte(b.String())
}

// CertPaths are the paths of certs, in order.
func CertPaths(certs []CertFile) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = c.Path
	}
	return out
}

// ParseCrtList reads the certificate paths of `show ssl crt-list FILE`
// (or of a crt-list file): the first field of each line that is not a
// comment.
func ParseCrtList(out string) []string {
	var paths []string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		paths = append(paths, strings.Fields(l)[0])
	}
	return paths
}

// CrtListEntries are the certificate paths HAProxy's crt-list list holds,
// in order; nil when HAProxy has no such crt-list.
func (r *Runtime) CrtListEntries(ctx context.Context, list string) ([]string, error) {
	out, err := r.Command(ctx, "show ssl crt-list "+list)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(strings.TrimSpace(out), "#") {
		return nil, nil // "didn't find the specified filename": not loaded
	}
	return ParseCrtList(out), nil
}

// AddCert loads a certificate HAProxy does not hold yet and appends it to
// crt-list list: new, set and commit, then add to the list.
func (r *Runtime) AddCert(ctx context.Context, list, path string, pemData []byte) error {
	out, err := r.Command(ctx, "new ssl cert "+path)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "New empty certificate store") && !strings.Contains(out, "already exists") {
		return fmt.Errorf("new ssl cert %s: %s", path, strings.TrimSpace(out))
	}
	if err := r.SetCert(ctx, path, pemData); err != nil {
		return err
	}
	out, err = r.Command(ctx, "add ssl crt-list "+list+" "+path)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "Success!") {
		return fmt.Errorf("add ssl crt-list %s %s: %s", list, path, strings.TrimSpace(out))
	}
	return nil
}

// RemoveCert takes a certificate out of crt-list list and out of memory;
// connections that use it keep it until they end.
func (r *Runtime) RemoveCert(ctx context.Context, list, path string) error {
	out, err := r.Command(ctx, "del ssl crt-list "+list+" "+path)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "deleted") && !strings.Contains(out, "Success") {
		return fmt.Errorf("del ssl crt-list %s %s: %s", list, path, strings.TrimSpace(out))
	}
	out, err = r.Command(ctx, "del ssl cert "+path)
	if err != nil {
		return err
	}
	if !strings.Contains(out, "deleted") && !strings.Contains(out, "Success") {
		return fmt.Errorf("del ssl cert %s: %s", path, strings.TrimSpace(out))
	}
	return nil
}
