package specs

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"strings"
)

// ValidateSet validates each object and what must hold across them: unique
// names, and no two LoadBalancers sharing one instance. Every problem
// carries the Source, Doc and LB of the object it is about; a problem
// between two objects is put on the later one.
func ValidateSet(lbs []*LoadBalancer) ErrorList {
	var out ErrorList
	names := map[string]*LoadBalancer{}
	instances := map[string]*LoadBalancer{}
	for _, lb := range lbs {
		out = append(out, locate(Validate(lb), lb)...)
		if other, dup := names[lb.Metadata.Name]; dup {
			out = append(out, locate(ErrorList{{Path: "metadata.name",
				Reason: fmt.Sprintf("duplicate LoadBalancer %q (also in %s)", lb.Metadata.Name, where(other))}}, lb)...)
		} else {
			names[lb.Metadata.Name] = lb
		}
		inst := lb.Spec.Instance.Project + "/" + lb.Spec.Instance.Name
		if other, dup := instances[inst]; dup {
			out = append(out, locate(ErrorList{{Path: "spec.instance.name",
				Reason: fmt.Sprintf("instance %s is already used by LoadBalancer %q", inst, other.Metadata.Name)}}, lb)...)
		} else {
			instances[inst] = lb
		}
	}
	return out
}

// locate puts the problems on lb: its file, document and name.
func locate(l ErrorList, lb *LoadBalancer) ErrorList {
	for i := range l {
		l[i].Source, l[i].Doc, l[i].LB = lb.Source, lb.Doc, lb.Metadata.Name
	}
	return l
}

// where names the file (and document) lb was read from.
func where(lb *LoadBalancer) string {
	switch {
	case lb.Source != "" && lb.Doc > 0:
		return fmt.Sprintf("%s document %d", lb.Source, lb.Doc)
	case lb.Source != "":
		return lb.Source
	case lb.Doc > 0:
		return fmt.Sprintf("document %d", lb.Doc)
	}
	return "another document"
}

// ValidateFiles checks the files a spec names: a certificate (frontend, or
// a pool's backendTLS.clientCertificateFile) must exist and hold a PEM
// certificate chain and its matching private key; a backendTLS.ca must
// hold CA certificates and nothing else. Messages
// never quote file content. It reads the certificate where the spec says
// (LoadCertificate); a controller confined to a certificate root uses
// ValidateFilesUnder.
func ValidateFiles(lb *LoadBalancer) ErrorList {
	return validateFiles(lb, LoadCertificate, LoadCABundle, "")
}

// ValidateFilesUnder is ValidateFiles for a certificate that must lie under
// root (LoadCertificateUnder).
func ValidateFilesUnder(lb *LoadBalancer, root string) ErrorList {
	return validateFiles(lb, func(path string) ([]byte, error) { return LoadCertificateUnder(root, path) },
		func(path string) ([]byte, error) { return LoadCABundleUnder(root, path) }, root)
}

func validateFiles(lb *LoadBalancer, load, loadCA func(string) ([]byte, error), root string) ErrorList {
	var e errs
	if t := lb.Spec.Frontend.TLS; t != nil {
		if t.CertificateFile != "" {
			if _, err := load(t.CertificateFile); err != nil {
				e.add("spec.frontend.tls.certificateFile", "%v", err)
			}
		}
		for i, c := range t.Certificates {
			if c.File == "" {
				continue // said by Validate
			}
			if _, err := load(c.File); err != nil {
				e.add(fmt.Sprintf("spec.frontend.tls.certificates[%d].file", i), "%v", err)
			}
		}
		if _, ferr := LoadACMEFiles(t.ACME, root); ferr != nil {
			e.add(ferr.Path, "%s", ferr.Reason)
		}
	}
	_, list := LoadBackendFiles(lb, load, loadCA)
	e.list = append(e.list, list...)
	return locate(e.list, lb)
}

// LoadCertificate reads a PEM file of certificate(s) and one private key,
// checks that the key matches the first certificate, and returns the PEM
// normalised for HAProxy: certificate blocks first, then the key, with no
// blank lines and nothing but PEM blocks. The file is read with
// ReadRegularFile (a regular file of at most MaxCertificateFile bytes),
// wherever it is; LoadCertificateUnder also confines it to a root.
func LoadCertificate(path string) ([]byte, error) {
	data, err := ReadRegularFile(path, MaxCertificateFile)
	if err != nil {
		return nil, certReadError(path, err)
	}
	return parseCertificate(path, data)
}

// parseCertificate checks and normalises the PEM content of a certificate
// file (see LoadCertificate); path only names it in errors.
func parseCertificate(path string, data []byte) ([]byte, error) {
	var certs, keys []byte
	nKeys := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "CERTIFICATE":
			certs = append(certs, pem.EncodeToMemory(b)...)
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			keys = append(keys, pem.EncodeToMemory(b)...)
			nKeys++
		}
	}
	switch {
	case len(certs) == 0 && nKeys == 0:
		return nil, fmt.Errorf("%s is not PEM: it must hold the certificate and its private key, concatenated", path)
	case len(certs) == 0:
		return nil, fmt.Errorf("%s holds no CERTIFICATE block", path)
	case nKeys == 0:
		return nil, fmt.Errorf("%s holds no PRIVATE KEY block (HAProxy needs certificate and key in one file)", path)
	case nKeys > 1:
		return nil, fmt.Errorf("%s holds %d private keys; it must hold exactly one", path, nKeys)
	}
	if _, err := tls.X509KeyPair(certs, keys); err != nil {
		return nil, fmt.Errorf("%s: certificate and key do not form a pair: %v", path, err)
	}
	return append(certs, keys...), nil
}
