// Package testcert makes throwaway certificates for tests (self-signed, or
// issued by a throwaway CA), so that no key material is ever committed.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// PEM returns a self-signed certificate for the given DNS names (and IPs)
// followed by its private key, the form HAProxy's crt expects.
func PEM(names ...string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return selfSigned(key, &key.PublicKey, names)
}

// WeakRSA is PEM with a 1024-bit RSA key: a pair Go accepts but that
// OpenSSL 3, and so HAProxy, refuses to load ("ee key too small").
func WeakRSA(names ...string) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		panic(err)
	}
	return selfSigned(key, &key.PublicKey, names)
}

// Issued returns a certificate for names signed by a throwaway CA ("Test
// CA"), its key, then the CA certificate: an issued leaf, not self-signed.
func Issued(names ...string) []byte {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		panic(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	out := sign(key, &key.PublicKey, names, caTmpl, caKey)
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
}

func selfSigned(key crypto.Signer, pub any, names []string) []byte {
	return sign(key, pub, names, nil, key)
}

// sign makes a certificate for names and pub, signed by parent's key (itself
// when parent is nil), followed by key.
func sign(key crypto.Signer, pub any, names []string, parent *x509.Certificate, parentKey crypto.Signer) []byte {
	return signFor(key, pub, names, parent, parentKey, x509.ExtKeyUsageServerAuth)
}

// signFor is sign with the given extended key usage.
func signFor(key crypto.Signer, pub any, names []string, parent *x509.Certificate, parentKey crypto.Signer, usage x509.ExtKeyUsage) []byte {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: first(names)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		panic(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
}

// Write writes PEM(names...) to dir/file with mode 0600 and returns the path.
func Write(dir, file string, names ...string) string {
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, PEM(names...), 0o600); err != nil {
		panic(err)
	}
	return p
}

func first(names []string) string {
	if len(names) == 0 {
		return "incuslb.test"
	}
	return names[0]
}

// CA is a throwaway certificate authority that issues server and client
// certificates (for mutual TLS tests).
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA certificate alone.
	PEM []byte
}

// NewCA makes a CA called cn, valid from an hour ago for two days.
func NewCA(cn string) *CA {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return &CA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Server issues a server certificate for names: the leaf, then its key.
func (ca *CA) Server(names ...string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return sign(key, &key.PublicKey, names, ca.cert, ca.key)
}

// Client issues a client certificate (extended key usage clientAuth) with
// common name cn: the leaf, then its key.
func (ca *CA) Client(cn string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return signFor(key, &key.PublicKey, []string{cn}, ca.cert, ca.key, x509.ExtKeyUsageClientAuth)
}
