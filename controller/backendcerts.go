package controller

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// The backendTLS files of an LB instance (haproxy.BackendFile: a pool's
// client certificate and CA bundle), handled as the frontend certificates
// are: observed on disk and in HAProxy, planned (pure), swapped through
// the runtime API with no reload when HAProxy runs the desired config,
// staged for the reload otherwise.

// backendObservation is what the instance holds of backendTLS files.
type backendObservation struct {
	// Files are the files at the desired paths (nil for a missing one).
	Files map[string][]byte
	// Served is what HAProxy holds under each path (backendFingerprint),
	// "" for nothing.
	Served map[string]string
}

// loadBackendFiles reads the pools' backendTLS files from the
// controller's host (under CertRoot when it is set) and places them.
func (a *Applier) loadBackendFiles(lb *specs.LoadBalancer) ([]haproxy.BackendFile, error) {
	loadCert, loadCA := specs.LoadCertificate, specs.LoadCABundle
	if a.CertRoot != "" {
		loadCert = func(path string) ([]byte, error) { return specs.LoadCertificateUnder(a.CertRoot, path) }
		loadCA = func(path string) ([]byte, error) { return specs.LoadCABundleUnder(a.CertRoot, path) }
	}
	files, errs := specs.LoadBackendFiles(lb, loadCert, loadCA)
	if len(errs) > 0 {
		return nil, errs
	}
	return haproxy.BackendFiles(lb, haproxy.Options{}, files), nil
}

// observeBackendFiles reads the backendTLS files in the instance.
func (a *Applier) observeBackendFiles(ctx context.Context, lb *specs.LoadBalancer, files []haproxy.BackendFile, obs *backendObservation) error {
	obs.Files = map[string][]byte{}
	for _, f := range files {
		var err error
		if obs.Files[f.Path], err = a.readOptional(ctx, lb, f.Path); err != nil {
			return err
		}
	}
	return nil
}

// observeBackendServed asks HAProxy what it holds under each path.
func observeBackendServed(ctx context.Context, rt *haproxy.Runtime, files []haproxy.BackendFile, obs *backendObservation) error {
	obs.Served = map[string]string{}
	for _, f := range files {
		var err error
		if f.CA {
			obs.Served[f.Path], err = rt.CAFileSHA1(ctx, f.Path)
		} else {
			obs.Served[f.Path], err = rt.CertSHA1(ctx, f.Path)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// backendFingerprint is what HAProxy shows of f once it holds it: the
// SHA-1 of a client certificate's leaf (show ssl cert), or the set of a CA
// bundle's certificates (haproxy.CASet, as show ssl ca-file gives it).
func backendFingerprint(f haproxy.BackendFile) string {
	if !f.CA {
		return certSHA1(f.PEM)
	}
	var sums []string
	for rest := f.PEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			sum := sha1.Sum(b.Bytes)
			sums = append(sums, strings.ToUpper(hex.EncodeToString(sum[:])))
		}
	}
	return haproxy.CASet(sums)
}

// planBackendCerts fills c's backend part: the files that differ on disk,
// and, when HAProxy runs a config of ours (loaded), those it holds
// differently. It is pure.
func planBackendCerts(c *certPlan, files []haproxy.BackendFile, obs backendObservation, loaded bool) {
	for _, f := range files {
		if !bytes.Equal(obs.Files[f.Path], f.PEM) {
			c.backendWrite = append(c.backendWrite, f)
		}
		if loaded && obs.Served[f.Path] != backendFingerprint(f) {
			c.backendSet = append(c.backendSet, f)
		}
	}
}

// backendChange describes the runtime change of f, for the plan's record.
func backendChange(f haproxy.BackendFile) string {
	if f.CA {
		return "backend CA " + f.Path + " swapped (set ssl ca-file + commit)"
	}
	return "backend client certificate " + f.Path + " swapped (set ssl cert + commit)"
}

// applyBackendCerts swaps the planned backendTLS files in HAProxy; new
// connections to the servers use them.
func applyBackendCerts(ctx context.Context, rt *haproxy.Runtime, c *certPlan) ([]string, error) {
	var done []string
	for _, f := range c.backendSet {
		var err error
		if f.CA {
			err = rt.SetCAFile(ctx, f.Path, f.PEM)
		} else {
			err = rt.SetCert(ctx, f.Path, f.PEM)
		}
		if err != nil {
			return done, fmt.Errorf("HAProxy refused the new %s; the old one stays in use: %w", f.Path, err)
		}
		done = append(done, backendChange(f))
	}
	return done, nil
}

// writeBackendFiles brings the backendTLS files on disk up to date (what a
// restart of HAProxy loads); uid and gid are haproxy's.
func (a *Applier) writeBackendFiles(ctx context.Context, lb *specs.LoadBalancer, files []haproxy.BackendFile, uid, gid int64) error {
	in := lb.Spec.Instance
	for _, f := range files {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, f.Path, f.PEM, incus.FileMode{UID: uid, GID: gid, Mode: 0o600}); err != nil {
			return err
		}
	}
	return nil
}

// stagedBackendPath points the crt or ca-file parameters of cfg that name
// path at tmp, its staged copy, for haproxy -c.
func stagedBackendPath(cfg []byte, path, tmp string) []byte {
	for _, kw := range []string{" crt ", " ca-file "} {
		for _, end := range []string{" ", "\n"} {
			cfg = bytes.ReplaceAll(cfg, []byte(kw+path+end), []byte(kw+tmp+end))
		}
	}
	return cfg
}
