package acme

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
)

// Permissions of everything written under StateDir.
const (
	dirMode  fs.FileMode = 0o700
	fileMode fs.FileMode = 0o600
)

// Certificate is an issued certificate as incuslb serves it.
type Certificate struct {
	// Name is the caller's name for it, also its file name.
	Name string
	// Hosts are the names it was asked for, in the order asked.
	Hosts []string
	// PEM is the leaf, its chain, then the private key: HAProxy's crt format.
	PEM []byte
	// NotBefore and NotAfter are the leaf's validity.
	NotBefore, NotAfter time.Time
	// Issuer is the leaf's issuer's distinguished name.
	Issuer string
	// Serial is the leaf's serial number, lowercase hex.
	Serial string
}

// certMeta is certificates/<name>.json: what the PEM does not say (the
// hosts in the order asked, the CA's URL of the certificate) and what it
// says, for a reader that does not parse PEM.
type certMeta struct {
	Name       string    `json:"name"`
	Hosts      []string  `json:"hosts"`
	Serial     string    `json:"serial"`
	Issuer     string    `json:"issuer"`
	NotBefore  time.Time `json:"notBefore"`
	NotAfter   time.Time `json:"notAfter"`
	CertURL    string    `json:"certURL,omitempty"`
	ObtainedAt time.Time `json:"obtainedAt"`
}

// accountFile is accounts/<hash>/account.json. The key is beside it, in
// account.key, never in here.
type accountFile struct {
	Directory    string               `json:"directory"`
	Email        string               `json:"email,omitempty"`
	Registration acme.ExtendedAccount `json:"registration"`
}

// accountDir is StateDir/accounts/<hash>, the hash of the directory URL and
// the e-mail: a new CA or a new contact is a new account.
func accountDir(stateDir, directory, email string) string {
	sum := sha256.Sum256([]byte(directory + "\n" + email))
	return filepath.Join(stateDir, "accounts", hex.EncodeToString(sum[:16]))
}

// certPaths returns the PEM and meta file paths of a certificate name.
func certPaths(stateDir, name string) (pemPath, metaPath string) {
	dir := filepath.Join(stateDir, "certificates")
	return filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".json")
}

// ensureDir makes dir (and its parents) and sets dir itself to 0700.
func ensureDir(dir string) error {
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return err
	}
	return os.Chmod(dir, dirMode)
}

// writeFile writes data to path atomically (a temporary file beside it,
// synced, then renamed) with mode 0600, making the directory 0700.
func writeFile(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := ensureDir(dir); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(fileMode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadOrCreateKey reads the account key at path, or makes an EC P-256 key
// and writes it there. Errors name the file, never its content.
func loadOrCreateKey(path string) (crypto.Signer, bool, error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := certcrypto.ParsePEMPrivateKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("account key %s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, err
	}
	key, err := certcrypto.GeneratePrivateKey(certcrypto.EC256)
	if err != nil {
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	if err := writeFile(path, certcrypto.PEMEncode(key)); err != nil {
		return nil, false, fmt.Errorf("account key: %w", err)
	}
	return key, true, nil
}

// loadAccount reads account.json; nil, nil when there is none or it is for
// another directory or e-mail, or holds no account URL.
func loadAccount(path, directory, email string) (*acme.ExtendedAccount, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f accountFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Directory != directory || f.Email != email || f.Registration.Location == "" {
		return nil, nil
	}
	return &f.Registration, nil
}

// saveAccount writes account.json, without the external account binding
// a CA may echo (a MAC made with the EAB key: no business on disk).
func saveAccount(path, directory, email string, reg *acme.ExtendedAccount) error {
	kept := *reg
	kept.ExternalAccountBinding = nil
	data, err := json.MarshalIndent(accountFile{Directory: directory, Email: email, Registration: kept}, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(path, append(data, '\n'))
}

// saveCertificate writes the PEM, then the meta file.
func saveCertificate(stateDir string, c *Certificate, certURL string, now time.Time) error {
	pemPath, metaPath := certPaths(stateDir, c.Name)
	if err := writeFile(pemPath, c.PEM); err != nil {
		return err
	}
	meta := certMeta{
		Name: c.Name, Hosts: c.Hosts, Serial: c.Serial, Issuer: c.Issuer,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, CertURL: certURL, ObtainedAt: now.UTC(),
	}
	data, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(metaPath, append(data, '\n'))
}

// loadCertificate reads certificates/<name>.pem and its meta file. The
// hosts come from the meta file when it describes this very leaf (same
// serial), else from the leaf's names.
func loadCertificate(stateDir, name string) (*Certificate, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	pemPath, metaPath := certPaths(stateDir, name)
	data, err := os.ReadFile(pemPath)
	if err != nil {
		return nil, err
	}
	c, _, err := parseCertificate(name, nil, data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pemPath, err)
	}
	if raw, err := os.ReadFile(metaPath); err == nil {
		var meta certMeta
		if json.Unmarshal(raw, &meta) == nil && meta.Serial == c.Serial && len(meta.Hosts) > 0 {
			c.Hosts = meta.Hosts
		}
	}
	return c, nil
}

// parseCertificate checks pemData (certificates then a private key that
// matches the leaf) and describes it. hosts nil means the leaf's own names.
// Errors never quote the data.
func parseCertificate(name string, hosts []string, pemData []byte) (*Certificate, *x509.Certificate, error) {
	pair, err := tls.X509KeyPair(pemData, pemData)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid certificate or key: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, nil, fmt.Errorf("invalid leaf certificate: %w", err)
		}
	}
	if leaf.IsCA {
		return nil, nil, errors.New("the first certificate is a CA, not a leaf")
	}
	if hosts == nil {
		hosts = certcrypto.ExtractDomains(leaf)
	}
	return &Certificate{
		Name:      name,
		Hosts:     slices.Clone(hosts),
		PEM:       bytes.Clone(pemData),
		NotBefore: leaf.NotBefore,
		NotAfter:  leaf.NotAfter,
		Issuer:    leaf.Issuer.String(),
		Serial:    leaf.SerialNumber.Text(16),
	}, leaf, nil
}

// leaf parses c's leaf certificate.
func (c *Certificate) leaf() (*x509.Certificate, error) {
	if c == nil {
		return nil, errors.New("nil certificate")
	}
	certs, err := certcrypto.ParsePEMBundle(c.PEM)
	if err != nil {
		return nil, fmt.Errorf("certificate %q: %w", c.Name, err)
	}
	return certs[0], nil
}

// validName accepts a certificate name usable as a file name: 1 to 128 of
// letters, digits, '.', '_' and '-', not beginning with '.' or '-'.
func validName(name string) error {
	if name == "" || len(name) > 128 {
		return fmt.Errorf("certificate name %q: must be 1 to 128 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			(i > 0 && (r == '.' || r == '_' || r == '-')) || (i == 0 && r == '_')
		if !ok {
			return fmt.Errorf("certificate name %q: only letters, digits, '.', '_' and '-', not first '.' or '-'", name)
		}
	}
	return nil
}
