package controller

import (
	"context"
	"slices"
	"time"

	"github.com/go-acme/lego/v5/challenge"
	"github.com/incuslb/incuslb/acme"
	"github.com/incuslb/incuslb/specs"
)

// An ACME order for one host of a LoadBalancer, and the recovery of the
// certificates a controller before this one left.

// order obtains or renews host's certificate, and schedules the next.
func (m *ACMEManager) order(ctx context.Context, st *acmeLB, host string) {
	st.mu.Lock()
	lb, old, hs, files := st.lb, st.certs[host], st.hostSt[host], st.files
	recovered := hs.recovered
	st.mu.Unlock()
	name := acmeCertName(lb.Metadata.Name, host)
	log := m.Log.WithValues("lb", lb.Metadata.Name, "host", host)
	timeout := m.OrderTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var crt *acme.Certificate
	var err error
	kind := "renew"
	var resp acme.Responder
	var solver challenge.Provider
	if u := lb.Spec.Frontend.TLS.ACME.DNSUpdate; lb.Spec.Frontend.TLS.ACME.Challenge == specs.ChallengeDNS01 && u != nil {
		s, serr := newDNSUpdateSolver(u, files.TSIG)
		if serr != nil {
			err = serr
		} else {
			solver = s
		}
	} else {
		resp = &lbResponder{a: m.Applier, lb: lb}
	}
	switch {
	case err != nil:
	case old == nil:
		kind = "obtain"
		crt, err = st.client.Obtain(octx, name, []string{host}, resp, solver)
	case recovered:
		// Maybe another account's: ordered anew, not as a replacement.
		crt, err = st.client.Obtain(octx, name, []string{host}, resp, solver)
	default:
		crt, err = st.client.Renew(octx, old, resp, solver)
	}
	if ctx.Err() != nil {
		return // forgotten meanwhile
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	now := m.now()
	if err != nil {
		hs.failures++
		hs.lastError = truncate(err.Error(), maxACMEError)
		hs.next = now.Add(acme.RetryDelay(hs.failures, err))
		m.Metrics.acmeFailed(lb.Metadata.Name, acme.Reason(err))
		log.Error(err, "ACME order failed; the certificate held keeps serving", "kind", kind,
			"failures", hs.failures, "retryAt", hs.next.UTC().Format(time.RFC3339))
		if m.Requeue != nil {
			m.Requeue(lb.Metadata.Name) // the status says so at once
		}
		return
	}
	hs.recovered = false
	m.Metrics.acmeIssuedOne(lb.Metadata.Name, kind)
	st.certs[host] = crt
	hs.failures, hs.lastError = 0, ""
	var ari *acme.RenewalWindow
	if w, err := st.client.RenewalInfo(octx, crt); err == nil {
		ari = w
	}
	hs.next = acme.NextRenewal(crt, now, ari)
	if !hs.next.After(now) {
		hs.next = now.Add(acme.Backoff(1)) // a CA that issues already-due certificates is not asked in a loop
	}
	log.Info("ACME certificate ready", "kind", kind, "serial", crt.Serial, "notAfter", crt.NotAfter.UTC().Format(time.RFC3339),
		"nextRenewal", hs.next.UTC().Format(time.RFC3339))
	if m.Requeue != nil {
		m.Requeue(lb.Metadata.Name)
	}
}

// recover looks in the LB instance (each replica) for certificates that
// name exactly one of hosts, valid and not due for renewal, as another
// controller left them, and keeps them.
func (m *ACMEManager) recover(ctx context.Context, st *acmeLB, lb *specs.LoadBalancer, hosts []string) {
	for _, r := range Replicas(lb) {
		for _, pemData := range m.Applier.servedCerts(ctx, r) {
			leaf := leafOf(pemData)
			if leaf == nil || len(leaf.DNSNames) != 1 || !slices.Contains(hosts, leaf.DNSNames[0]) ||
				leaf.Issuer.String() == leaf.Subject.String() {
				continue
			}
			host := leaf.DNSNames[0]
			if !acme.NextRenewal(&acme.Certificate{NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter}, m.now(), nil).After(m.now()) {
				continue
			}
			crt, err := st.client.Import(acmeCertName(lb.Metadata.Name, host), []string{host}, pemData)
			if err != nil {
				continue
			}
			st.mu.Lock()
			if st.certs[host] == nil {
				st.certs[host] = crt
				st.hostSt[host].recovered = true
				st.hostSt[host].next = acme.NextRenewal(crt, m.now(), nil)
			}
			st.mu.Unlock()
			hosts = slices.DeleteFunc(hosts, func(h string) bool { return h == host })
		}
		if len(hosts) == 0 {
			return
		}
	}
}
