package controller

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/incuslb/incuslb/specs"
)

// fakeDNS is an authoritative server for one zone that takes RFC 2136
// updates of TXT records signed with one TSIG key, and answers TXT queries.
type fakeDNS struct {
	mu  sync.Mutex
	txt map[string][]string
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg).SetReply(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Opcode == dns.OpcodeUpdate && (r.IsTsig() == nil || w.TsigStatus() != nil):
		m.Rcode = dns.RcodeRefused
	case r.Opcode == dns.OpcodeUpdate:
		for _, rr := range r.Ns {
			t, ok := rr.(*dns.TXT)
			if !ok {
				continue
			}
			name := t.Hdr.Name
			switch t.Hdr.Class {
			case dns.ClassINET:
				f.txt[name] = append(f.txt[name], t.Txt...)
			case dns.ClassANY:
				delete(f.txt, name)
			case dns.ClassNONE:
				f.txt[name] = slices.DeleteFunc(f.txt[name], func(v string) bool { return slices.Contains(t.Txt, v) })
			}
		}
		if t := r.IsTsig(); t != nil {
			m.SetTsig(t.Hdr.Name, t.Algorithm, 300, int64(t.TimeSigned))
		}
	default:
		q := r.Question[0]
		for _, v := range f.txt[q.Name] {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{v}})
		}
	}
	_ = w.WriteMsg(m)
}

func startFakeDNS(t *testing.T, keyName, secret string) (*fakeDNS, string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDNS{txt: map[string][]string{}}
	srv := &dns.Server{PacketConn: pc, Handler: f, TsigSecret: map[string]string{dns.Fqdn(keyName): secret},
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }} // updates too
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return f, pc.LocalAddr().String()
}

// TestDNSUpdateSolver puts the challenge's TXT record with a signed update,
// finds it at the server (the propagation check), and takes it out; an
// update signed with the wrong secret is refused.
func TestDNSUpdateSolver(t *testing.T) {
	t.Setenv("LEGO_DISABLE_CNAME_SUPPORT", "true") // no lookup through the host's resolvers
	const secret = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
	f, addr := startFakeDNS(t, "incuslb-acme", secret)
	u := &specs.DNSUpdateSpec{Nameserver: addr, Zone: "example.test"}
	s, err := newDNSUpdateSolver(u, &specs.TSIGKey{Name: "incuslb-acme", Algorithm: "hmac-sha256", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Present(ctx, "a.example.test", "token", "token.thumbprint"); err != nil {
		t.Fatal(err)
	}
	const fqdn = "_acme-challenge.a.example.test."
	f.mu.Lock()
	values := slices.Clone(f.txt[fqdn])
	f.mu.Unlock()
	if len(values) != 1 {
		t.Fatalf("TXT records %v", values)
	}
	if ok, err := txtAt(ctx, addr, fqdn, values[0]); !ok || err != nil {
		t.Errorf("the propagation check does not find the record: %v", err)
	}
	if ok, _ := txtAt(ctx, addr, fqdn, "other"); ok {
		t.Error("the propagation check finds a value that is not there")
	}
	if err := s.CleanUp(ctx, "a.example.test", "token", "token.thumbprint"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := txtAt(ctx, addr, fqdn, values[0]); ok {
		t.Error("the record is still there after CleanUp")
	}

	bad, err := newDNSUpdateSolver(u, &specs.TSIGKey{Name: "incuslb-acme", Algorithm: "hmac-sha256", Secret: "d3Jvbmd3cm9uZ3dyb25nd3Jvbmc="})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Present(ctx, "a.example.test", "token", "token.thumbprint"); err == nil {
		t.Error("an update signed with the wrong secret was taken")
	}
	if _, err := newDNSUpdateSolver(u, nil); err == nil {
		t.Error("no key: want an error")
	}
}
