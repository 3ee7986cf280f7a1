package specs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
)

// The files of a pool's backendTLS (mutual TLS to its servers): a client
// certificate with its key, read as LoadCertificate reads a frontend
// certificate, and a bundle of CA certificates the servers must chain to.

// MaxCABundle is the most CA certificates one backendTLS.ca file may hold.
const MaxCABundle = 256

// BackendFileKind says what a backend file is.
type BackendFileKind string

const (
	BackendClientCert BackendFileKind = "clientCertificateFile"
	BackendCA         BackendFileKind = "ca"
)

// BackendFile is one file of a pool's backendTLS, read and checked.
type BackendFile struct {
	Pool string
	Kind BackendFileKind
	// Field is its field path, for errors (spec.pools[i].backendTLS.ca).
	Field string
	// PEM is normalised: for a client certificate, the chain then the key
	// (as LoadCertificate); for a CA, the certificates alone.
	PEM []byte
}

// LoadBackendFiles reads the backendTLS files of every pool of lb, in pool
// order (client certificate, then CA): loadCert reads a client
// certificate (LoadCertificate or LoadCertificateUnder), loadCA a CA
// bundle (LoadCABundle or LoadCABundleUnder). Each problem names its
// field; the files read are returned even when another failed.
func LoadBackendFiles(lb *LoadBalancer, loadCert, loadCA func(string) ([]byte, error)) ([]BackendFile, ErrorList) {
	var out []BackendFile
	var e errs
	for i, p := range lb.Spec.Pools {
		t := p.BackendTLS
		if t == nil {
			continue
		}
		base := fmt.Sprintf("spec.pools[%d].backendTLS.", i)
		for _, f := range []struct {
			kind BackendFileKind
			path string
			load func(string) ([]byte, error)
		}{{BackendClientCert, t.ClientCertificateFile, loadCert}, {BackendCA, t.CA, loadCA}} {
			if f.path == "" {
				continue
			}
			data, err := f.load(f.path)
			if err != nil {
				e.add(base+string(f.kind), "%v", err)
				continue
			}
			out = append(out, BackendFile{Pool: p.Name, Kind: f.kind, Field: base + string(f.kind), PEM: data})
		}
	}
	return out, locate(e.list, lb)
}

// LoadCABundle reads a PEM file of CA certificates (at most
// MaxCertificateFile bytes, ReadRegularFile) and returns its certificates
// normalised: CERTIFICATE blocks only, with no blank lines. A private key
// in it is refused (a CA bundle is public; a key there is a mistake that
// would be copied into the LB).
func LoadCABundle(path string) ([]byte, error) {
	data, err := ReadRegularFile(path, MaxCertificateFile)
	if err != nil {
		return nil, certReadError(path, err)
	}
	return parseCABundle(path, data)
}

// LoadCABundleUnder is LoadCABundle for a file that must lie under root
// (as LoadCertificateUnder).
func LoadCABundleUnder(root, path string) ([]byte, error) {
	data, err := readUnder(root, path, MaxCertificateFile)
	if err != nil {
		return nil, certReadError(path, err)
	}
	return parseCABundle(path, data)
}

// parseCABundle checks and normalises a CA bundle; path only names it in
// errors, which never quote its content.
func parseCABundle(path string, data []byte) ([]byte, error) {
	for rest := data; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("%s holds a private key: a CA file must hold CA certificates only", path)
		}
	}
	var out []byte
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		n++
		if n > MaxCABundle {
			return nil, fmt.Errorf("%s holds more than %d certificates", path, MaxCABundle)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d does not parse: %v", path, n, err)
		}
		if !c.IsCA && !bytes.Equal(c.RawIssuer, c.RawSubject) {
			// OpenSSL anchors a chain at a CA or a self-signed
			// certificate only: an issued leaf here verifies nothing.
			return nil, fmt.Errorf("%s: certificate %d (%s) is neither a CA certificate (basic constraints CA:TRUE) nor self-signed", path, n, c.Subject.CommonName)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})...)
	}
	if n == 0 {
		return nil, fmt.Errorf("%s is not PEM: it must hold one or more CA certificates (CERTIFICATE blocks)", path)
	}
	return out, nil
}
