//go:build pebble

package acme

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// pebbleDir and pebbleCA are where a Pebble started for the tests listens
// and the root of its TLS certificate. Override with ACME_PEBBLE_DIR and
// ACME_PEBBLE_CA.
const (
	pebbleDir = "https://127.0.0.1:14000/dir"
	pebbleCA  = "../.cache/pebble/pebble.minica.pem"
)

// pebbleConfig returns a Config for a running Pebble, or skips the test.
// It does not start Pebble.
func pebbleConfig(t *testing.T) Config {
	t.Helper()
	dir, caPath := pebbleDir, pebbleCA
	if v := os.Getenv("ACME_PEBBLE_DIR"); v != "" {
		dir = v
	}
	if v := os.Getenv("ACME_PEBBLE_CA"); v != "" {
		caPath = v
	}
	ca, err := os.ReadFile(caPath)
	if err != nil {
		t.Skipf("no Pebble CA at %s: %v", caPath, err)
	}
	cfg := Config{Directory: dir, CABundle: ca, StateDir: t.TempDir(), HTTPTimeout: 5 * time.Second}
	tr, err := cfg.transport()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(dir)
	if err != nil {
		t.Skipf("no Pebble at %s: %v", dir, err)
	}
	resp.Body.Close()
	return cfg
}

// TestPebbleRegister registers an account at Pebble, then checks that a
// second Client on the same state reuses it without registering again.
// (Obtain needs a load balancer to answer the challenges: the e2e tests.)
func TestPebbleRegister(t *testing.T) {
	cfg := pebbleConfig(t)
	cfg.Email = "acme-test@example.org"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c, err := New(cfg, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Register(ctx); err != nil {
		t.Fatalf("Register: %v (reason %s)", err, Reason(err))
	}
	account := c.Account()
	if !strings.HasPrefix(account, "https://") {
		t.Fatalf("account URL %q", account)
	}
	regPath := filepath.Join(accountDir(cfg.StateDir, cfg.Directory, cfg.Email), "account.json")
	checkMode(t, regPath, 0o600)
	if err := c.Register(ctx); err != nil || c.Account() != account {
		t.Fatalf("second Register: %v, account %q then %q", err, account, c.Account())
	}

	again, err := New(cfg, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if again.Account() != account {
		t.Fatalf("reloaded account %q, want %q", again.Account(), account)
	}

	// Losing account.json but keeping the key finds the same account.
	if err := os.Remove(regPath); err != nil {
		t.Fatal(err)
	}
	fresh, err := New(cfg, testr.New(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := fresh.Register(ctx); err != nil {
		t.Fatalf("Register with the kept key: %v", err)
	}
	if fresh.Account() != account {
		t.Fatalf("the same key registered as %q, want %q", fresh.Account(), account)
	}
}
