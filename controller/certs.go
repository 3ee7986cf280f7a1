package controller

import (
	"bytes"
	"context"
	"fmt"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// The certificates of an LB instance (see haproxy.CertFile): what is on
// disk and what HAProxy serves, observed; what to change, planned; and the
// changes made through the runtime API with no reload, or staged for a
// reload.

// certObservation is what the instance holds of certificates.
type certObservation struct {
	// Files are the files at the desired certificates' paths (nil for a
	// missing one); CrtList is the crt-list file.
	Files   map[string][]byte
	CrtList []byte
	// Loaded are the paths in HAProxy's crt-list, in order (nil when
	// HAProxy loaded none), and SHA1 the fingerprint HAProxy serves under
	// each of them.
	Loaded []string
	SHA1   map[string]string
	// ACMEMapMissing: the LB answers ACME challenges, and the map file
	// they are answered from is not there (HAProxy would not start).
	ACMEMapMissing bool
	// Backend are the pools' backendTLS files (backendcerts.go).
	Backend backendObservation
}

// observeCertFiles reads the certificate files of certs and the crt-list.
func (a *Applier) observeCertFiles(ctx context.Context, lb *specs.LoadBalancer, certs []haproxy.CertFile, obs *certObservation) error {
	var err error
	if obs.CrtList, err = a.readOptional(ctx, lb, haproxy.CrtListPath(lb, haproxy.Options{})); err != nil {
		return err
	}
	if lb.Spec.Frontend.TLS != nil && lb.Spec.Frontend.TLS.ACME != nil {
		m, err := a.readOptional(ctx, lb, haproxy.ACMEMapPath(lb, haproxy.Options{}))
		if err != nil {
			return err
		}
		obs.ACMEMapMissing = m == nil
	}
	obs.Files = map[string][]byte{}
	for _, c := range certs {
		if obs.Files[c.Path], err = a.readOptional(ctx, lb, c.Path); err != nil {
			return err
		}
	}
	return nil
}

// observeCertsLoaded asks HAProxy which certificates its crt-list holds.
func observeCertsLoaded(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, obs *certObservation) error {
	var err error
	if obs.Loaded, err = rt.CrtListEntries(ctx, haproxy.CrtListPath(lb, haproxy.Options{})); err != nil {
		return err
	}
	obs.SHA1 = map[string]string{}
	for _, path := range obs.Loaded {
		if obs.SHA1[path], err = rt.CertSHA1(ctx, path); err != nil {
			return err
		}
	}
	return nil
}

// certPlan is what a pass changes of the certificates.
type certPlan struct {
	// write are the files that differ on disk; crtList, when not nil, the
	// crt-list file's new content.
	write   []haproxy.CertFile
	crtList []byte
	// acmeMap: write the (empty) ACME challenge map file.
	acmeMap bool
	// Through the runtime API: set replaces what HAProxy serves under a
	// path it holds, add loads a new one and appends it to the crt-list,
	// del takes one out.
	set, add []haproxy.CertFile
	del      []string
	// The pools' backendTLS files (backendcerts.go): to write on disk,
	// and to swap in HAProxy.
	backendWrite, backendSet []haproxy.BackendFile
}

// runtimeChanges reports whether HAProxy's certificates must change.
func (c *certPlan) runtimeChanges() bool {
	return len(c.set)+len(c.add)+len(c.del)+len(c.backendSet) > 0
}

// diskChanges reports whether files must be written in the instance.
func (c *certPlan) diskChanges() bool {
	return len(c.write) > 0 || c.crtList != nil || c.acmeMap || len(c.backendWrite) > 0
}

// changes reports whether anything must change, on disk or in HAProxy.
func (c *certPlan) changes() bool { return c.runtimeChanges() || c.diskChanges() }

// dropRuntime forgets the runtime changes: a reload loads the files.
func (c *certPlan) dropRuntime() { c.set, c.add, c.del, c.backendSet = nil, nil, nil, nil }

// planCerts compares the desired certificates with the observed ones;
// loaded says whether HAProxy runs a config of ours (whose crt-list it
// then holds). It is pure.
func planCerts(certs []haproxy.CertFile, obs certObservation, loaded bool) certPlan {
	var c certPlan
	if len(certs) == 0 {
		return c
	}
	c.acmeMap = obs.ACMEMapMissing
	for _, f := range certs {
		if !bytes.Equal(obs.Files[f.Path], f.PEM) {
			c.write = append(c.write, f)
		}
	}
	list := haproxy.CrtList(haproxy.CertPaths(certs))
	if !bytes.Equal(obs.CrtList, list) {
		c.crtList = list
	}
	if !loaded {
		return c
	}
	for i, f := range certs {
		switch {
		case i < len(obs.Loaded) && obs.Loaded[i] == f.Path:
			if obs.SHA1[f.Path] != certSHA1(f.PEM) {
				c.set = append(c.set, f)
			}
		default:
			c.add = append(c.add, f)
		}
	}
	// An entry out of place (edited by hand) goes, and comes back at its
	// place through add.
	for i, path := range obs.Loaded {
		if i >= len(certs) || certs[i].Path != path {
			c.del = append(c.del, path)
		}
	}
	return c
}

// applyCerts makes HAProxy serve the planned certificates (deletions
// first, so that a path taken out and put back in its place is new), and
// returns what it did.
func applyCerts(ctx context.Context, lb *specs.LoadBalancer, rt *haproxy.Runtime, c *certPlan) ([]string, error) {
	list := haproxy.CrtListPath(lb, haproxy.Options{})
	var done []string
	for _, path := range c.del {
		if err := rt.RemoveCert(ctx, list, path); err != nil {
			return done, fmt.Errorf("HAProxy would not remove certificate %s; the others keep serving: %w", path, err)
		}
		done = append(done, "certificate "+path+" removed (del ssl crt-list + del ssl cert)")
	}
	for _, f := range c.set {
		if err := rt.SetCert(ctx, f.Path, f.PEM); err != nil {
			return done, fmt.Errorf("HAProxy refused the new certificate %s; the old one keeps serving: %w", f.Path, err)
		}
		done = append(done, "certificate "+f.Path+" swapped (set ssl cert + commit)")
	}
	for _, f := range c.add {
		if err := rt.AddCert(ctx, list, f.Path, f.PEM); err != nil {
			return done, fmt.Errorf("HAProxy refused certificate %s; the others keep serving: %w", f.Path, err)
		}
		done = append(done, "certificate "+f.Path+" added (new ssl cert + commit + add ssl crt-list)")
	}
	return done, nil
}

// writeCertFiles brings the certificate files and the crt-list on disk up
// to date (what a restart of HAProxy loads).
func (a *Applier) writeCertFiles(ctx context.Context, lb *specs.LoadBalancer, c *certPlan) error {
	if !c.diskChanges() {
		return nil
	}
	in := lb.Spec.Instance
	uid, gid, err := a.haproxyIDs(ctx, lb)
	if err != nil {
		return err
	}
	if err := a.Incus.Mkdir(ctx, in.Project, in.Name, haproxy.CertDir, incus.FileMode{UID: 0, GID: gid, Mode: 0o750}); err != nil {
		return err
	}
	for _, f := range c.write {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, f.Path, f.PEM, incus.FileMode{UID: uid, GID: gid, Mode: 0o600}); err != nil {
			return err
		}
	}
	if err := a.writeBackendFiles(ctx, lb, c.backendWrite, uid, gid); err != nil {
		return err
	}
	if c.acmeMap {
		if err := a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.ACMEMapPath(lb, haproxy.Options{}), nil,
			incus.FileMode{UID: uid, GID: gid, Mode: 0o640}); err != nil {
			return err
		}
	}
	if c.crtList != nil {
		return a.Incus.WriteFile(ctx, in.Project, in.Name, haproxy.CrtListPath(lb, haproxy.Options{}), c.crtList,
			incus.FileMode{UID: uid, GID: gid, Mode: 0o640})
	}
	return nil
}
