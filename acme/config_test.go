package acme

import (
	"strings"
	"testing"
	"time"

	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-logr/logr"
)

// TestConfigValidate checks that each bad field is reported by name.
func TestConfigValidate(t *testing.T) {
	ca := newTestChain(t, []string{"ca.example"}, time.Now(), time.Now().Add(time.Hour))
	good := Config{
		Directory: "https://acme.example/directory",
		Email:     "ops@example.org",
		CABundle:  ca.ca,
		EAB:       &EAB{KID: "kid-1", HMACKey: "c2VjcmV0LWhtYWMta2V5"},
		KeyType:   "rsa2048",
		StateDir:  "/var/lib/incuslb/acme",
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // substrings of the error; none: valid
	}{
		{"valid", func(*Config) {}, nil},
		{"minimal", func(c *Config) { *c = Config{Directory: c.Directory, StateDir: c.StateDir} }, nil},
		{"no directory", func(c *Config) { c.Directory = "" }, []string{"Directory: is empty"}},
		{"http directory", func(c *Config) { c.Directory = "http://acme.example/dir" }, []string{"Directory:", "https"}},
		{"directory not a URL", func(c *Config) { c.Directory = "::not a url" }, []string{"Directory:"}},
		{"email with display name", func(c *Config) { c.Email = "Ops <ops@example.org>" }, []string{"Email:"}},
		{"email garbage", func(c *Config) { c.Email = "ops" }, []string{"Email:"}},
		{"CA bundle without PEM", func(c *Config) { c.CABundle = []byte("nope") }, []string{"CABundle:"}},
		{"EAB without KID", func(c *Config) { c.EAB = &EAB{HMACKey: "c2VjcmV0"} }, []string{"EAB.KID: is empty"}},
		{"EAB without HMAC", func(c *Config) { c.EAB = &EAB{KID: "k"} }, []string{"EAB.HMACKey: is empty"}},
		{"EAB HMAC not base64url", func(c *Config) { c.EAB = &EAB{KID: "k", HMACKey: "not/base64+!"} }, []string{"EAB.HMACKey: is not base64url"}},
		{"key type unknown", func(c *Config) { c.KeyType = "ed25519" }, []string{"KeyType:", "ed25519"}},
		{"key type in lego's spelling", func(c *Config) { c.KeyType = "EC256" }, []string{"KeyType:"}},
		{"no state dir", func(c *Config) { c.StateDir = "" }, []string{"StateDir: is empty"}},
		{"negative timeout", func(c *Config) { c.HTTPTimeout = -time.Second }, []string{"HTTPTimeout:"}},
		{"several at once", func(c *Config) { c.Directory, c.StateDir = "", "" },
			[]string{"Directory:", "StateDir:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			e := *good.EAB
			c.EAB = &e
			tt.mutate(&c)
			err := c.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %v; want it to contain %q", err, w)
				}
			}
			if c.EAB != nil && c.EAB.HMACKey != "" && strings.Contains(err.Error(), c.EAB.HMACKey) {
				t.Errorf("Validate quotes the HMAC key: %v", err)
			}
		})
	}
}

// TestConfigKeyType checks the mapping to lego's key types and the default.
func TestConfigKeyType(t *testing.T) {
	for in, want := range map[string]certcrypto.KeyType{
		"": certcrypto.EC256, "ec256": certcrypto.EC256, "ec384": certcrypto.EC384,
		"rsa2048": certcrypto.RSA2048, "rsa4096": certcrypto.RSA4096,
	} {
		if got := (Config{KeyType: in}).keyType(); got != want {
			t.Errorf("keyType(%q) = %v, want %v", in, got, want)
		}
	}
	if got := (Config{}).httpTimeout(); got != DefaultHTTPTimeout {
		t.Errorf("httpTimeout default = %v", got)
	}
}

// TestNewRejectsInvalidConfig checks New validates first, touching nothing.
func TestNewRejectsInvalidConfig(t *testing.T) {
	cfg := testConfig(t)
	cfg.Directory = "http://insecure.example/dir"
	if _, err := New(cfg, logr.Discard()); err == nil || !strings.Contains(err.Error(), "Directory") {
		t.Fatalf("New: %v, want a Directory error", err)
	}
}
