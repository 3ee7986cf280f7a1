package controller

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
)

// ConditionCertificateExpiring is True while a certificate the LB serves
// expires within CertificateExpiringWithin.
const ConditionCertificateExpiring = "CertificateExpiring"

// CertificateExpiringWithin is how close to its expiry a certificate sets
// ConditionCertificateExpiring.
const CertificateExpiringWithin = 14 * 24 * time.Hour

// maxCertStatuses bounds the certificates status lists (instance config
// values are not meant to be large); the metric has them all.
const maxCertStatuses = 50

// CertStatus is one certificate as `incuslb status` shows it. It holds no
// key material: names, issuer and dates from the leaf certificate only.
type CertStatus struct {
	Name     string    `json:"name"`   // the file's name in the container
	Source   string    `json:"source"` // "file PATH", "acme DIRECTORY" or "placeholder ..."
	Hosts    []string  `json:"hosts,omitempty"`
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	// NotBefore is the start of its validity.
	NotBefore time.Time `json:"notBefore,omitzero"`
	// NextRenewal is when an ACME certificate is renewed next.
	NextRenewal time.Time `json:"nextRenewal,omitzero"`
	// Error is why the last ACME order for it failed (the one held, if
	// any, keeps serving).
	Error string `json:"error,omitempty"`
}

// certStatuses describes certs (in order) with their sources.
func certStatuses(certs []haproxy.CertFile, sources []certSource) []CertStatus {
	out := make([]CertStatus, 0, len(certs))
	for i, c := range certs {
		s := CertStatus{Name: path.Base(c.Path)}
		if i < len(sources) {
			s.Source, s.NextRenewal, s.Error = sources[i].source, sources[i].nextRenewal.UTC(), sources[i].lastError
			if sources[i].nextRenewal.IsZero() {
				s.NextRenewal = time.Time{}
			}
		}
		if leaf := leafOf(c.PEM); leaf != nil {
			s.Hosts = slices.Clone(leaf.DNSNames)
			if len(s.Hosts) == 0 && leaf.Subject.CommonName != "" {
				s.Hosts = []string{leaf.Subject.CommonName}
			}
			s.Issuer = leaf.Issuer.CommonName
			if s.Issuer == "" {
				s.Issuer = leaf.Issuer.String()
			}
			s.NotAfter, s.NotBefore = leaf.NotAfter.UTC(), leaf.NotBefore.UTC()
		}
		out = append(out, s)
	}
	return out
}

// leafOf is the first certificate of a PEM, parsed, or nil.
func leafOf(pemData []byte) *x509.Certificate {
	der := leafDER(pemData)
	if der == nil {
		return nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil
	}
	return c
}

// leafDER is the DER of the first certificate of a PEM, or nil.
func leafDER(pemData []byte) []byte {
	for rest := pemData; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			return b.Bytes
		}
	}
}

// expiringWithin is CertificateExpiringWithin, or a third of a shorter
// lifetime (a 6-day ACME certificate is renewed at two thirds of it, and is
// not "expiring" for its whole life).
func expiringWithin(c CertStatus) time.Duration {
	if c.NotBefore.IsZero() {
		return CertificateExpiringWithin
	}
	return min(CertificateExpiringWithin, c.NotAfter.Sub(c.NotBefore)/3)
}

// expiringCondition is ConditionCertificateExpiring for certs at now.
func expiringCondition(certs []CertStatus, now time.Time, generation int64) Condition {
	var soon []string
	for _, c := range certs {
		if !c.NotAfter.IsZero() && c.NotAfter.Sub(now) < expiringWithin(c) {
			soon = append(soon, fmt.Sprintf("%s (%s) expires %s", c.Name, strings.Join(c.Hosts, ", "), c.NotAfter.Format(time.RFC3339)))
		}
	}
	if len(soon) == 0 {
		return Condition{Type: ConditionCertificateExpiring, Status: "False", Reason: "Valid", ObservedGeneration: generation}
	}
	return Condition{Type: ConditionCertificateExpiring, Status: "True", Reason: "ExpiresSoon",
		Message: truncate(strings.Join(soon, "; "), 1000), ObservedGeneration: generation}
}
