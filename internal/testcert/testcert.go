// Package testcert makes throwaway self-signed certificates for tests, so
// that no key material is ever committed.
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

func selfSigned(key crypto.Signer, pub any, names []string) []byte {
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: first(names)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
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
