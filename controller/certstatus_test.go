package controller

import (
	"strings"
	"testing"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/internal/testcert"
)

func TestCertStatuses(t *testing.T) {
	certs := []haproxy.CertFile{
		{Path: "/etc/haproxy/certs/edge.pem", PEM: testcert.PEM("a.example.org")},
		{Path: "/etc/haproxy/certs/edge-1.pem", PEM: []byte("not a certificate")},
	}
	got := certStatuses(certs, []certSource{{source: "file /etc/incuslb/a.pem"}, {source: "file /etc/incuslb/b.pem"}})
	if len(got) != 2 {
		t.Fatalf("%d statuses", len(got))
	}
	a := got[0]
	if a.Name != "edge.pem" || a.Source != "file /etc/incuslb/a.pem" || strings.Join(a.Hosts, ",") != "a.example.org" || a.NotAfter.IsZero() || a.Issuer == "" {
		t.Errorf("first: %+v", a)
	}
	if b := got[1]; b.Name != "edge-1.pem" || b.Hosts != nil || !b.NotAfter.IsZero() {
		t.Errorf("unparsable: %+v", b)
	}
	for _, s := range got {
		if strings.Contains(strings.Join(append(s.Hosts, s.Issuer, s.Source), " "), "PRIVATE") {
			t.Errorf("key material in status: %+v", s)
		}
	}
}

func TestExpiringCondition(t *testing.T) {
	now := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	c := func(name string, left time.Duration) CertStatus {
		return CertStatus{Name: name, Hosts: []string{name + ".example.org"}, NotAfter: now.Add(left)}
	}
	for _, tc := range []struct {
		name   string
		certs  []CertStatus
		status string
		names  []string
	}{
		{"all far", []CertStatus{c("a", 60*24*time.Hour), c("b", 15*24*time.Hour)}, "False", nil},
		{"one within 14 days", []CertStatus{c("a", 60*24*time.Hour), c("b", 13*24*time.Hour)}, "True", []string{"b"}},
		{"one expired", []CertStatus{c("a", -time.Hour)}, "True", []string{"a"}},
		{"expiry unknown", []CertStatus{{Name: "x"}}, "False", nil},
		{"6-day certificate before its renewal time", []CertStatus{{Name: "s", NotBefore: now.Add(-3 * 24 * time.Hour), NotAfter: now.Add(3 * 24 * time.Hour)}}, "False", nil},
		{"6-day certificate past its renewal time", []CertStatus{{Name: "s", Hosts: []string{"s.example.org"}, NotBefore: now.Add(-5 * 24 * time.Hour), NotAfter: now.Add(24 * time.Hour)}}, "True", []string{"s"}},
	} {
		got := expiringCondition(tc.certs, now, 3)
		if got.Status != tc.status || got.Type != ConditionCertificateExpiring || got.ObservedGeneration != 3 {
			t.Errorf("%s: %+v", tc.name, got)
		}
		for _, n := range tc.names {
			if !strings.Contains(got.Message, n+".example.org") {
				t.Errorf("%s: message %q lacks %s", tc.name, got.Message, n)
			}
		}
	}
}
