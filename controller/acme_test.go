package controller

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// acmeLBSpec is a defaulted LoadBalancer with ACME for hosts.
func acmeLBSpec(t *testing.T, hosts ...string) *specs.LoadBalancer {
	t.Helper()
	lb := &specs.LoadBalancer{APIVersion: specs.APIVersion, Kind: specs.Kind, Metadata: specs.ObjectMeta{Name: "edge"}}
	lb.Spec.Frontend.TLS = &specs.TLSSpec{ACME: &specs.ACMESpec{Directory: "https://127.0.0.1:1/dir", Hosts: specs.ACMEHosts{List: hosts}}}
	lb.Spec.Routes = []specs.Route{{Pool: "p"}}
	lb.Spec.Pools = []specs.Pool{{Name: "p", Selector: map[string]string{"user.role": "x"}, Port: 80}}
	specs.SetDefaults(lb)
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Fatal(errs)
	}
	return lb
}

// TestACMESchedule: no order before a pass made the LB answer challenges;
// then hosts without a certificate are due at once, and one renewed is due
// at its time, on a fake clock.
func TestACMESchedule(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	a := &Applier{Incus: newFake(), Log: logr.Discard()}
	m := &ACMEManager{StateDir: t.TempDir(), Applier: a, Log: logr.Discard(), ServeOnly: true, Now: func() time.Time { return now }}
	lb := acmeLBSpec(t, "a.example.org", "b.example.org")
	if err := m.Prepare(context.Background(), lb); err != nil {
		t.Fatal(err)
	}
	st := m.lbs["edge"]
	if h, wait := m.due(st); h != "" || wait != maxACMESleep {
		t.Fatalf("before Started: due %q, wait %v", h, wait)
	}
	m.Started("edge")
	if h, _ := m.due(st); h != "a.example.org" {
		t.Fatalf("due %q, want a.example.org (no certificate yet)", h)
	}
	st.hostSt["a.example.org"].next = now.Add(20 * time.Minute)
	st.hostSt["b.example.org"].next = now.Add(40 * time.Minute)
	if h, wait := m.due(st); h != "" || wait != 20*time.Minute {
		t.Fatalf("due %q, wait %v; want nothing for 20m", h, wait)
	}
	now = now.Add(41 * time.Minute)
	if h, _ := m.due(st); h != "a.example.org" {
		t.Fatalf("due %q at +41m", h)
	}
	if !m.Renew("edge") || st.hostSt["b.example.org"].next != (time.Time{}) {
		t.Fatal("Renew does not make every host due")
	}
	if got := m.Pending(lb); len(got) != 2 {
		t.Fatalf("pending %v", got)
	}
	m.Forget("edge")
	if m.Certificates(lb) != nil || m.Renew("edge") {
		t.Fatal("a forgotten LB still has ACME state")
	}
}

// TestACMERecover: a controller with an empty state dir takes the issued
// certificate the LB instance serves for a host (not a placeholder, not a
// certificate for other names, nothing outside the certificate directory),
// keeps it, and serves it.
func TestACMERecover(t *testing.T) {
	f := newFake()
	issued := testcert.Issued("a.example.org")
	list := haproxy.CrtListPath(&specs.LoadBalancer{Metadata: specs.ObjectMeta{Name: "edge"}}, haproxy.Options{})
	f.files[list] = []byte("/etc/haproxy/certs/edge.pem\n/etc/haproxy/certs/edge-1.pem\n/etc/haproxy/certs/edge-2.pem\n/etc/shadow\n")
	f.files["/etc/haproxy/certs/edge.pem"] = testcert.PEM("b.example.org") // self-signed: not taken
	f.files["/etc/haproxy/certs/edge-1.pem"] = issued
	f.files["/etc/haproxy/certs/edge-2.pem"] = testcert.Issued("a.example.org", "c.example.org") // other names
	f.files["/etc/shadow"] = testcert.Issued("b.example.org")                                    // outside: never read
	state := t.TempDir()
	a := &Applier{Incus: f, Log: logr.Discard(), StateDir: state}
	a.ACME = &ACMEManager{StateDir: state, Applier: a, Log: logr.Discard(), ServeOnly: true}
	lb := acmeLBSpec(t, "a.example.org", "b.example.org")
	pems, sources, pending, err := a.desiredCerts(context.Background(), lb)
	if err != nil {
		t.Fatal(err)
	}
	if len(pems) != 1 || leafOf(pems[0]).DNSNames[0] != "a.example.org" || sources[0].source != "acme https://127.0.0.1:1/dir" {
		t.Fatalf("served %d certificates, sources %+v", len(pems), sources)
	}
	if len(pending) != 1 || pending[0].Hosts[0] != "b.example.org" {
		t.Fatalf("pending %+v", pending)
	}
	if _, err := os.Stat(filepath.Join(state, "acme", "certificates", "edge_a.example.org.pem")); err != nil {
		t.Fatalf("the recovered certificate is not kept: %v", err)
	}
}

// TestPlaceholder: an ACME LB with no certificate yet serves one
// self-signed placeholder, the same across passes and restarts.
func TestPlaceholder(t *testing.T) {
	state := t.TempDir()
	lb := acmeLBSpec(t, "a.example.org")
	serve := func() []byte {
		a := &Applier{Incus: newFake(), Log: logr.Discard(), StateDir: state}
		a.ACME = &ACMEManager{StateDir: state, Applier: a, Log: logr.Discard(), ServeOnly: true}
		pems, sources, _, err := a.desiredCerts(context.Background(), lb)
		if err != nil || len(pems) != 1 || sources[0].source[:11] != "placeholder" {
			t.Fatalf("%d certificates, %+v, %v", len(pems), sources, err)
		}
		again, _, _, _ := a.desiredCerts(context.Background(), lb)
		if string(again[0]) != string(pems[0]) {
			t.Fatal("a second pass serves another placeholder")
		}
		return pems[0]
	}
	first := serve()
	if leafOf(first).Subject.CommonName != "incuslb placeholder edge" {
		t.Fatalf("placeholder %v", leafOf(first).Subject)
	}
	if string(serve()) != string(first) {
		t.Fatal("a restart serves another placeholder")
	}
}
