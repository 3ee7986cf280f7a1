package acme

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/acme"
	"github.com/go-logr/logr"
)

// checkMode fails unless path has exactly the permission bits want.
func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %o, want %o", path, got, want)
	}
}

// TestNewAccountState checks that New makes the account key with 0600 in
// 0700 directories, keyed by directory and e-mail, and reuses it.
func TestNewAccountState(t *testing.T) {
	cfg := testConfig(t)
	c := newTestClient(t, cfg)

	dir := accountDir(cfg.StateDir, cfg.Directory, cfg.Email)
	if filepath.Dir(dir) != filepath.Join(cfg.StateDir, "accounts") {
		t.Fatalf("account dir %s not under accounts/", dir)
	}
	checkMode(t, filepath.Join(cfg.StateDir, "accounts"), 0o700)
	checkMode(t, dir, 0o700)
	keyPath := filepath.Join(dir, "account.key")
	checkMode(t, keyPath, 0o600)
	key1, _ := os.ReadFile(keyPath)
	if !bytes.Contains(key1, []byte("PRIVATE KEY")) {
		t.Fatalf("account key is not a PEM private key")
	}
	if c.Account() != "" {
		t.Fatalf("a new account is registered already: %q", c.Account())
	}

	// The same CA and e-mail: the same key.
	newTestClient(t, cfg)
	if key2, _ := os.ReadFile(keyPath); !bytes.Equal(key1, key2) {
		t.Fatal("the account key changed on a second New")
	}

	// Another e-mail, or another CA: another account.
	other := cfg
	other.Email = "other@example.org"
	if accountDir(other.StateDir, other.Directory, other.Email) == dir {
		t.Fatal("another e-mail maps to the same account dir")
	}
	other = cfg
	other.Directory = "https://127.0.0.1:2/directory"
	if accountDir(other.StateDir, other.Directory, other.Email) == dir {
		t.Fatal("another directory maps to the same account dir")
	}
}

// TestAccountRegistrationKept checks that a saved registration is loaded
// by New (no registering again), and only for its own directory.
func TestAccountRegistrationKept(t *testing.T) {
	cfg := testConfig(t)
	newTestClient(t, cfg)
	dir := accountDir(cfg.StateDir, cfg.Directory, cfg.Email)
	reg := &acme.ExtendedAccount{
		Account:  acme.Account{Status: "valid", ExternalAccountBinding: []byte(`{"signature":"bWFj"}`)},
		Location: "https://127.0.0.1:1/acct/7",
	}
	path := filepath.Join(dir, "account.json")
	if err := saveAccount(path, cfg.Directory, cfg.Email, reg); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path, 0o600)
	if data, _ := os.ReadFile(path); bytes.Contains(data, []byte("bWFj")) {
		t.Fatal("account.json keeps the external account binding")
	}

	if got := newTestClient(t, cfg).Account(); got != reg.Location {
		t.Fatalf("Account() = %q, want %q", got, reg.Location)
	}
	// A file that claims another directory is ignored.
	if err := saveAccount(path, "https://elsewhere.example/dir", cfg.Email, reg); err != nil {
		t.Fatal(err)
	}
	if got := newTestClient(t, cfg).Account(); got != "" {
		t.Fatalf("Account() = %q from another directory's file", got)
	}
}

// TestBadAccountKey checks that an unreadable key is an error naming the
// file, without its content.
func TestBadAccountKey(t *testing.T) {
	cfg := testConfig(t)
	dir := accountDir(cfg.StateDir, cfg.Directory, cfg.Email)
	junk := "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----\n"
	if err := writeFile(filepath.Join(dir, "account.key"), []byte(junk)); err != nil {
		t.Fatal(err)
	}
	_, err := New(cfg, logr.Discard())
	if err == nil || !strings.Contains(err.Error(), "account.key") {
		t.Fatalf("New: %v, want an error naming account.key", err)
	}
	if strings.Contains(err.Error(), "U0VDUkVU") {
		t.Fatalf("the error quotes the key file: %v", err)
	}
}

// TestCertificateRoundTrip saves a certificate as Obtain does and loads it
// back, checking the files' modes and every field.
func TestCertificateRoundTrip(t *testing.T) {
	cfg := testConfig(t)
	c := newTestClient(t, cfg)
	nb := time.Now().Add(-time.Hour).Truncate(time.Second).UTC()
	na := nb.Add(90 * 24 * time.Hour)
	chain := newTestChain(t, []string{"b.example", "a.example"}, nb, na)

	hosts := []string{"b.example", "a.example"}
	crt, leaf, err := parseCertificate("web-1", hosts, chain.pem())
	if err != nil {
		t.Fatal(err)
	}
	if leaf.SerialNumber.Cmp(chain.serial) != 0 || crt.Serial != chain.serial.Text(16) {
		t.Fatalf("serial %s, want %s", crt.Serial, chain.serial.Text(16))
	}
	if err := saveCertificate(cfg.StateDir, crt, "https://ca.example/cert/1", time.Now()); err != nil {
		t.Fatal(err)
	}
	pemPath, metaPath := certPaths(cfg.StateDir, "web-1")
	checkMode(t, filepath.Dir(pemPath), 0o700)
	checkMode(t, pemPath, 0o600)
	checkMode(t, metaPath, 0o600)
	if meta, _ := os.ReadFile(metaPath); bytes.Contains(meta, []byte("PRIVATE")) {
		t.Fatal("the meta file holds key material")
	}

	got, err := c.Load("web-1")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got.Name != "web-1" || !slices.Equal(got.Hosts, hosts) || !bytes.Equal(got.PEM, chain.pem()) ||
		!got.NotBefore.Equal(nb) || !got.NotAfter.Equal(na) || got.Serial != crt.Serial ||
		got.Issuer != "CN=incuslb test CA" {
		t.Fatalf("Load = %+v, want %+v", got, crt)
	}

	// A meta file of another certificate: the hosts come from the leaf.
	raw, _ := os.ReadFile(metaPath)
	raw = bytes.Replace(raw, []byte(crt.Serial), []byte("ffff"), 1)
	if err := writeFile(metaPath, raw); err != nil {
		t.Fatal(err)
	}
	got, err = c.Load("web-1")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.example", "b.example"}; !slices.Equal(slices.Sorted(slices.Values(got.Hosts)), want) {
		t.Fatalf("hosts without a matching meta file = %v, want the leaf's %v", got.Hosts, want)
	}
}

// TestLoadRejects checks what Load refuses, and that its errors never
// quote the PEM.
func TestLoadRejects(t *testing.T) {
	cfg := testConfig(t)
	c := newTestClient(t, cfg)
	now := time.Now()
	a := newTestChain(t, []string{"a.example"}, now, now.Add(time.Hour))
	b := newTestChain(t, []string{"b.example"}, now, now.Add(time.Hour))

	tests := []struct {
		name string
		data []byte
	}{
		{"key of another certificate", bytes.Join([][]byte{a.leaf, a.ca, b.key}, nil)},
		{"no key", bytes.Join([][]byte{a.leaf, a.ca}, nil)},
		{"no certificate", a.key},
		{"CA first", bytes.Join([][]byte{a.ca, a.key}, nil)},
		{"garbage", []byte("not PEM at all")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pemPath, _ := certPaths(cfg.StateDir, "bad")
			if err := writeFile(pemPath, tt.data); err != nil {
				t.Fatal(err)
			}
			_, err := c.Load("bad")
			if err == nil {
				t.Fatal("Load accepted it")
			}
			if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), string(a.key[30:60])) {
				t.Fatalf("the error quotes the PEM: %v", err)
			}
		})
	}

	if _, err := c.Load("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := c.Load("../escape"); err == nil {
		t.Fatal("Load accepted a name with a path")
	}
}

// TestValidName checks which certificate names may become file names.
func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "web-1.example_org": true, "_default": true, "A9": true,
		"": false, ".hidden": false, "-flag": false, "a/b": false, "..": false,
		"a b": false, strings.Repeat("x", 129): false, strings.Repeat("x", 128): true,
	} {
		if err := validName(name); (err == nil) != ok {
			t.Errorf("validName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}
