package controller

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/incuslb/incuslb/specs"
)

// certSource says where a served certificate comes from, for its status.
type certSource struct {
	source      string // "file PATH", "acme DIRECTORY", "placeholder"
	nextRenewal time.Time
	lastError   string
}

// desiredCerts are the certificates a pass serves, in order: the files
// (certificateFile, then certificates[]), then the ACME certificates held,
// and, when that makes none, a self-signed placeholder (HAProxy cannot
// bind TLS with an empty crt-list; it serves until the first ACME
// certificate replaces it). pending are the ACME hosts with no certificate
// yet, for the status.
func (a *Applier) desiredCerts(ctx context.Context, lb *specs.LoadBalancer) (pems [][]byte, sources []certSource, pending []CertStatus, err error) {
	t := lb.Spec.Frontend.TLS
	if t == nil {
		return nil, nil, nil, nil
	}
	if pems, err = a.loadCerts(lb); err != nil {
		return nil, nil, nil, err
	}
	for _, f := range t.CertificateFiles() {
		sources = append(sources, certSource{source: "file " + f})
	}
	if t.ACME == nil {
		return pems, sources, nil, nil
	}
	if err := a.ACME.Prepare(ctx, lb); err != nil {
		return nil, nil, nil, err
	}
	for _, c := range a.ACME.Certificates(lb) {
		pems = append(pems, c.PEM)
		sources = append(sources, certSource{source: c.Source, nextRenewal: c.NextRenewal, lastError: c.LastError})
	}
	pend := a.ACME.Pending(lb)
	for _, h := range lb.Spec.ACMEHosts() {
		if why, ok := pend[h]; ok {
			pending = append(pending, CertStatus{Name: "(pending)", Source: "acme " + t.ACME.Directory, Hosts: []string{h}, Error: why})
		}
	}
	if len(pems) == 0 {
		ph, err := a.placeholder(lb)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("placeholder certificate: %w", err)
		}
		pems = [][]byte{ph}
		sources = []certSource{{source: "placeholder (self-signed, until the first ACME certificate)"}}
	}
	return pems, sources, pending, nil
}

// placeholder is the LB's self-signed stand-in certificate: made once, kept
// under StateDir (when set) so that a restart serves the same one.
func (a *Applier) placeholder(lb *specs.LoadBalancer) ([]byte, error) {
	name := lb.Metadata.Name
	if p, ok := a.placeholders.get(name); ok {
		return p, nil
	}
	var path string
	if a.StateDir != "" {
		path = filepath.Join(a.StateDir, "placeholder", name+".pem")
		if _, err := os.Stat(path); err == nil {
			data, err := specs.LoadCertificate(path)
			if err == nil {
				a.placeholders.set(name, data)
				return data, nil
			}
			a.Log.Info("placeholder certificate unusable; making a new one", "lb", name, "error", err.Error())
		}
	}
	data, err := selfSigned("incuslb placeholder " + name)
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	a.placeholders.set(name, data)
	return data, nil
}

// selfSigned makes a self-signed ECDSA P-256 certificate for cn, valid
// ten years, with its key: HAProxy's crt format.
func selfSigned(cn string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), nil
}
