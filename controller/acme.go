package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/acme"
	"github.com/incuslb/incuslb/specs"
)

// ACMEManager obtains and renews the ACME certificates of the
// LoadBalancers whose spec asks for them (spec.frontend.tls.acme), one
// certificate per host, and hands them to the passes, which serve them by
// SNI through the runtime API (no reload). One goroutine per LoadBalancer
// does its orders, one host at a time; a pass never waits on the CA.
//
// A host's certificate is ordered once the LB's HAProxy answers the
// HTTP-01 challenges (after a successful pass), renewed at two thirds of
// its lifetime or inside the CA's ARI window, and kept under StateDir. A
// failure retries with backoff (longer after a rate-limit answer, as long
// as the CA's Retry-After), and the certificate held keeps serving.
// Before a first order, a certificate for the host already served by the
// LB instance (left by another controller) is taken over instead.
type ACMEManager struct {
	// StateDir holds the accounts and certificates (see package acme).
	StateDir string
	// CertRoot confines the CA bundle and EAB key files, as certificates'.
	CertRoot string
	Applier  *Applier
	Log      logr.Logger
	Metrics  *Metrics
	// Requeue asks for a pass of a LoadBalancer, when its certificates
	// changed.
	Requeue func(name string)
	// OrderTimeout bounds one order. Default 5 min.
	OrderTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// ServeOnly serves the certificates held and orders none (incuslb
	// apply: a one-shot run does not wait for a CA).
	ServeOnly bool

	mu  sync.Mutex
	lbs map[string]*acmeLB
}

// acmeLB is the ACME state of one LoadBalancer.
type acmeLB struct {
	name   string
	key    string // the account's identity: directory, email, key type, files
	client *acme.Client
	cancel context.CancelFunc
	wake   chan struct{}

	mu      sync.Mutex
	lb      *specs.LoadBalancer // the latest spec, for the responder
	files   specs.ACMEFiles     // its files' content (the TSIG key)
	hosts   []string
	certs   map[string]*acme.Certificate // by host
	hostSt  map[string]*acmeHost
	started bool // HAProxy answers challenges: orders may begin
}

// acmeHost is where one host's certificate stands.
type acmeHost struct {
	next      time.Time // the next order (renewal or retry)
	failures  int
	lastError string
	recovered bool // taken over from the LB instance: renewed without ARI's replaces
	triedLB   bool // the LB instance was searched for one
}

// ACMECert is one certificate the manager holds for a LoadBalancer.
type ACMECert struct {
	Host        string
	PEM         []byte
	Source      string
	NextRenewal time.Time
	LastError   string
}

func (m *ACMEManager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// acmeCertName is the state file name of a host's certificate.
func acmeCertName(lb, host string) string {
	return lb + "_" + strings.ReplaceAll(host, "*", "_wildcard_")
}

// Certificates are the LB's ACME certificates held, in host order, each
// with where it stands. Called by every pass; it reads no file.
func (m *ACMEManager) Certificates(lb *specs.LoadBalancer) []ACMECert {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	st := m.lbs[lb.Metadata.Name]
	m.mu.Unlock()
	if st == nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []ACMECert
	for _, h := range st.hosts {
		c := st.certs[h]
		if c == nil || !m.now().Before(c.NotAfter) {
			continue
		}
		hs := st.hostSt[h]
		out = append(out, ACMECert{Host: h, PEM: c.PEM, Source: "acme " + lb.Spec.Frontend.TLS.ACME.Directory,
			NextRenewal: hs.next, LastError: hs.lastError})
	}
	return out
}

// Pending are the LB's hosts with no certificate yet, each with its last
// error ("" before the first order ends).
func (m *ACMEManager) Pending(lb *specs.LoadBalancer) map[string]string {
	const serveOnly = "not ordered: only incuslb run orders ACME certificates"
	out := map[string]string{}
	var st *acmeLB
	if m != nil {
		m.mu.Lock()
		st = m.lbs[lb.Metadata.Name]
		m.mu.Unlock()
	}
	if st == nil {
		for _, h := range lb.Spec.ACMEHosts() {
			out[h] = serveOnly
		}
		return out
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, h := range st.hosts {
		if st.certs[h] == nil {
			out[h] = st.hostSt[h].lastError
			if m.ServeOnly {
				out[h] = serveOnly
			}
		}
	}
	return out
}

// Prepare makes the manager follow lb's ACME spec before a pass: its
// account, its hosts and the certificates kept under StateDir, or, for a
// host with none there, the one the LB instance serves (once per host).
// It makes no request to the CA. A LoadBalancer without ACME is forgotten.
func (m *ACMEManager) Prepare(ctx context.Context, lb *specs.LoadBalancer) error {
	if m == nil {
		return nil
	}
	t := lb.Spec.Frontend.TLS
	if t == nil || t.ACME == nil {
		m.Forget(lb.Metadata.Name)
		return nil
	}
	a := t.ACME
	files, ferr := specs.LoadACMEFiles(a, m.CertRoot)
	if ferr != nil {
		ferr.Source = lb.Source
		return specs.ErrorList{*ferr}
	}
	key := accountKey(a, files)
	m.mu.Lock()
	if m.lbs == nil {
		m.lbs = map[string]*acmeLB{}
	}
	st := m.lbs[lb.Metadata.Name]
	m.mu.Unlock()
	if st == nil || st.key != key {
		cfg := acme.Config{Directory: a.Directory, Email: a.Email, CABundle: files.CABundle, KeyType: a.KeyType,
			StateDir: filepath.Join(m.StateDir, "acme")}
		if a.EAB != nil {
			cfg.EAB = &acme.EAB{KID: a.EAB.KID, HMACKey: files.HMACKey}
		}
		client, err := acme.New(cfg, m.Log.WithValues("lb", lb.Metadata.Name))
		if err != nil {
			return fmt.Errorf("ACME: %w", err)
		}
		next := &acmeLB{name: lb.Metadata.Name, key: key, client: client, wake: make(chan struct{}, 1),
			certs: map[string]*acme.Certificate{}, hostSt: map[string]*acmeHost{}, cancel: func() {}}
		m.mu.Lock()
		if old := m.lbs[lb.Metadata.Name]; old != nil {
			old.cancel()
		}
		m.lbs[lb.Metadata.Name] = next
		m.mu.Unlock()
		st = next
		if !m.ServeOnly {
			ctx, cancel := context.WithCancel(context.Background())
			st.cancel = cancel
			go m.loop(ctx, st)
		}
	}
	st.mu.Lock()
	st.lb, st.files = lb, files
	st.hosts = lb.Spec.ACMEHosts()
	var missing []string
	for _, h := range st.hosts {
		if st.hostSt[h] == nil {
			st.hostSt[h] = &acmeHost{}
		}
		if st.certs[h] != nil {
			continue
		}
		c, err := st.client.Load(acmeCertName(lb.Metadata.Name, h))
		switch {
		case err == nil && slices.Equal(c.Hosts, []string{h}):
			st.certs[h] = c
			st.hostSt[h].next = acme.NextRenewal(c, m.now(), nil)
			continue
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			m.Log.Error(err, "ACME certificate kept under the state dir is unusable; it will be ordered again", "lb", lb.Metadata.Name, "host", h)
		}
		if !st.hostSt[h].triedLB {
			st.hostSt[h].triedLB = true
			missing = append(missing, h)
		}
	}
	st.mu.Unlock()
	if len(missing) > 0 {
		// Before this controller serves anything for them: the LB may
		// already serve certificates another controller obtained.
		m.recover(ctx, st, lb, missing)
	}
	return nil
}

// Started tells the manager that lb's HAProxy answers HTTP-01 challenges
// (a pass succeeded): orders may begin, and due ones begin now.
func (m *ACMEManager) Started(name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	st := m.lbs[name]
	m.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	st.started = true
	st.mu.Unlock()
	st.poke()
}

// Renew orders new certificates for the LB's hosts now (incuslb acme
// renew), whatever their schedule.
func (m *ACMEManager) Renew(name string) bool {
	if m == nil {
		return false
	}
	m.mu.Lock()
	st := m.lbs[name]
	m.mu.Unlock()
	if st == nil {
		return false
	}
	st.mu.Lock()
	for _, hs := range st.hostSt {
		hs.next = time.Time{}
	}
	st.mu.Unlock()
	st.poke()
	return true
}

// Forget stops following a LoadBalancer; what is under StateDir stays.
func (m *ACMEManager) Forget(name string) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if st := m.lbs[name]; st != nil {
		st.cancel()
		delete(m.lbs, name)
	}
}

func (st *acmeLB) poke() {
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// accountKey identifies what an account depends on.
func accountKey(a *specs.ACMESpec, f specs.ACMEFiles) string {
	kid := ""
	if a.EAB != nil {
		kid = a.EAB.KID
	}
	sum := sha256.Sum256([]byte(strings.Join([]string{a.Directory, a.Email, a.KeyType, kid, f.HMACKey, string(f.CABundle)}, "\x00")))
	return hex.EncodeToString(sum[:])
}

// loop orders what is due, one host at a time, then sleeps until the next
// order is due or it is poked.
func (m *ACMEManager) loop(ctx context.Context, st *acmeLB) {
	for {
		host, wait := m.due(st)
		if host != "" {
			m.order(ctx, st, host)
			continue
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-st.wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// maxACMEError bounds an order's error kept for the status.
const maxACMEError = 500

// maxACMESleep bounds a sleep of the loop, so that a clock jump or a missed
// poke costs an hour at most.
const maxACMESleep = time.Hour

// due returns the first host whose order is due, or how long until one is.
func (m *ACMEManager) due(st *acmeLB) (string, time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if !st.started {
		return "", maxACMESleep
	}
	if l := m.Applier.Leader; l != nil {
		if leading, _ := l.Leading(); !leading {
			st.started = false // until a pass of this controller succeeds again
			return "", maxACMESleep
		}
	}
	now := m.now()
	wait := maxACMESleep
	for _, h := range st.hosts {
		next := st.hostSt[h].next
		if !next.After(now) {
			return h, 0
		}
		wait = min(wait, next.Sub(now))
	}
	return "", wait
}
