package specs_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// withACME is base with a host route and spec.frontend.tls.acme set to acme.
func withACME(acme string) string {
	in := strings.Replace(base, "    - pool: api_pool\n", "    - {host: API.example.org, pool: api_pool}\n    - pool: api_pool\n", 1)
	return in + "  frontend:\n    tls:\n      acme: " + acme + "\n"
}

// TestACME parses spec.frontend.tls.acme blocks: the defaults, the hosts
// it certifies, and each bad value rejected at its path with its reason.
func TestACME(t *testing.T) {
	cases := []struct {
		name, acme string
		hosts      []string // when valid
		directory  string   // when valid
		want       string   // "" when valid
	}{
		{"list", "{hosts: [a.example.org, b.example.org]}", []string{"a.example.org", "b.example.org"}, specs.LetsEncryptStaging, ""},
		{"from routes", "{hosts: fromRoutes}", []string{"api.example.org"}, specs.LetsEncryptStaging, ""},
		{"production", "{hosts: [a.example.org], production: true}", []string{"a.example.org"}, specs.LetsEncryptProduction, ""},
		{"pebble", "{directory: 'https://127.0.0.1:14000/dir', email: ops@example.org, hosts: [a.example.test], keyType: rsa2048}",
			[]string{"a.example.test"}, "https://127.0.0.1:14000/dir", ""},
		{"no hosts", "{email: ops@example.org}", nil, "", "spec.frontend.tls.acme.hosts: is required: a list of hosts, or fromRoutes"},
		{"bad hosts string", "{hosts: all}", nil, "", `spec.frontend.tls.acme.hosts: must be a list of hosts or "fromRoutes", not "all"`},
		{"hosts mapping", "{hosts: {a: b}}", nil, "", "spec.frontend.tls.acme.hosts: must be a list, not a mapping"},
		{"wildcard", "{hosts: ['*.example.org']}", nil, "", `spec.frontend.tls.acme.hosts[0]: "*.example.org" is a wildcard, which needs the dns-01 challenge`},
		{"single label", "{hosts: [localhost]}", nil, "", `spec.frontend.tls.acme.hosts[0]: must be a fully qualified DNS name`},
		{"address", "{hosts: [10.0.0.1]}", nil, "", `spec.frontend.tls.acme.hosts[0]: must be a fully qualified DNS name`},
		{"repeat", "{hosts: [a.example.org, A.example.org]}", nil, "", "spec.frontend.tls.acme.hosts[1]: repeats hosts[0]"},
		{"production and directory", "{hosts: [a.example.org], production: true, directory: 'https://ca.example/dir'}", nil, "",
			`spec.frontend.tls.acme.production: cannot be combined with directory ("https://ca.example/dir")`},
		{"http directory", "{hosts: [a.example.org], directory: 'http://ca.example/dir'}", nil, "", `spec.frontend.tls.acme.directory: must be an https:// URL, not "http://ca.example/dir"`},
		{"email", "{hosts: [a.example.org], email: 'Ops <ops@example.org>'}", nil, "", `spec.frontend.tls.acme.email: must be a bare e-mail address`},
		{"dns-01 without a server", "{hosts: [a.example.org], challenge: dns-01}", nil, "", "spec.frontend.tls.acme.dnsUpdate: is required with challenge: dns-01"},
		{"dns-01 wildcard", "{hosts: ['*.example.org', example.org], challenge: dns-01, dnsUpdate: {nameserver: '10.0.0.53', tsigKeyFile: k}}",
			[]string{"*.example.org", "example.org"}, specs.LetsEncryptStaging, ""},
		{"dnsUpdate without dns-01", "{hosts: [a.example.org], dnsUpdate: {nameserver: '10.0.0.53:53', tsigKeyFile: k}}", nil, "", "spec.frontend.tls.acme.dnsUpdate: is used only with challenge: dns-01"},
		{"dnsUpdate port", "{hosts: [a.example.org], challenge: dns-01, dnsUpdate: {nameserver: '10.0.0.53:99999', tsigKeyFile: k}}", nil, "", `spec.frontend.tls.acme.dnsUpdate.nameserver: port must be between 1 and 65535, not "99999"`},
		{"dnsUpdate no key", "{hosts: [a.example.org], challenge: dns-01, dnsUpdate: {nameserver: ns.example.org}}", nil, "", "spec.frontend.tls.acme.dnsUpdate.tsigKeyFile: is required: updates are signed (TSIG)"},
		{"challenge", "{hosts: [a.example.org], challenge: tls-alpn-01}", nil, "", `spec.frontend.tls.acme.challenge: must be http-01 or dns-01, not "tls-alpn-01"`},
		{"key type", "{hosts: [a.example.org], keyType: ed25519}", nil, "", `spec.frontend.tls.acme.keyType: must be one of ec256, ec384, rsa2048, rsa4096, not "ed25519"`},
		{"eab", "{hosts: [a.example.org], eab: {kid: k}}", nil, "", "spec.frontend.tls.acme.eab.hmacKeyFile: is required"},
		{"unknown field", "{hosts: [a.example.org], domains: [a]}", nil, "", "spec.frontend.tls.acme.domains: unknown field"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			lb, err := prepare(withACME(c.acme))
			if c.want != "" {
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v\nwant %s", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("want valid, got %v", err)
			}
			a := lb.Spec.Frontend.TLS.ACME
			if a.Directory != c.directory || (a.Challenge != "http-01" && a.Challenge != "dns-01") || (a.KeyType != "ec256" && a.KeyType != "rsa2048") {
				t.Errorf("defaults: %+v", a)
			}
			if got := lb.Spec.ACMEHosts(); !slices.Equal(got, c.hosts) {
				t.Errorf("hosts %v, want %v", got, c.hosts)
			}
		})
	}
}

// TestACMEFromRoutesNeedsAHost: fromRoutes with no route host is an error.
func TestACMEFromRoutesNeedsAHost(t *testing.T) {
	in := base + "  frontend:\n    tls:\n      acme: {hosts: fromRoutes}\n"
	if _, err := prepare(in); err == nil || !strings.Contains(err.Error(), "spec.frontend.tls.acme.hosts: is fromRoutes, but no route has a host") {
		t.Fatalf("got %v", err)
	}
}

// TestLoadACMEFiles reads the CA bundle and the EAB key under a root, and
// names the field of a file that is missing, outside the root, or not PEM.
func TestLoadACMEFiles(t *testing.T) {
	root := t.TempDir()
	testcert.Write(root, "ca.pem", "ca.example")
	if err := os.WriteFile(filepath.Join(root, "eab"), []byte("c2VjcmV0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "notpem"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &specs.ACMESpec{CABundle: filepath.Join(root, "ca.pem"), EAB: &specs.ACMEEAB{KID: "k", HMACKeyFile: filepath.Join(root, "eab")}}
	got, ferr := specs.LoadACMEFiles(a, root)
	if ferr != nil || len(got.CABundle) == 0 || got.HMACKey != "c2VjcmV0" {
		t.Fatalf("got %+v, %v", got, ferr)
	}
	for _, c := range []struct {
		a    specs.ACMESpec
		want string
	}{
		{specs.ACMESpec{CABundle: filepath.Join(root, "missing.pem")}, "spec.frontend.tls.acme.caBundle"},
		{specs.ACMESpec{CABundle: filepath.Join(root, "notpem")}, "spec.frontend.tls.acme.caBundle"},
		{specs.ACMESpec{CABundle: "/etc/passwd"}, "spec.frontend.tls.acme.caBundle"},
		{specs.ACMESpec{EAB: &specs.ACMEEAB{KID: "k", HMACKeyFile: filepath.Join(root, "missing")}}, "spec.frontend.tls.acme.eab.hmacKeyFile"},
	} {
		if _, ferr := specs.LoadACMEFiles(&c.a, root); ferr == nil || ferr.Path != c.want || strings.Contains(ferr.Reason, "hello") {
			t.Errorf("%+v: got %v, want an error at %s", c.a, ferr, c.want)
		}
	}
}

// TestLoadTSIGKey reads tsig-keygen's output and refuses anything else,
// never quoting the secret.
func TestLoadTSIGKey(t *testing.T) {
	root := t.TempDir()
	good := "key \"incuslb-acme\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0\";\n};\n"
	cases := []struct{ name, data, want string }{
		{"good", good, ""},
		{"md5", strings.Replace(good, "hmac-sha256", "hmac-md5", 1), `algorithm "hmac-md5" is not one of`},
		{"not a key", "secret=c2VjcmV0", "is not a TSIG key in BIND's form"},
		{"bad secret", strings.Replace(good, "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "c2Vj=cmV0", 1), "the secret is not base64"},
	}
	for _, c := range cases {
		f := filepath.Join(root, c.name)
		if err := os.WriteFile(f, []byte(c.data), 0o600); err != nil {
			t.Fatal(err)
		}
		a := &specs.ACMESpec{Challenge: "dns-01", DNSUpdate: &specs.DNSUpdateSpec{Nameserver: "127.0.0.1:53", TSIGKeyFile: f}}
		got, ferr := specs.LoadACMEFiles(a, root)
		if c.want == "" {
			if ferr != nil || got.TSIG == nil || got.TSIG.Name != "incuslb-acme" || got.TSIG.Algorithm != "hmac-sha256" {
				t.Errorf("%s: %+v %v", c.name, got.TSIG, ferr)
			}
			continue
		}
		if ferr == nil || ferr.Path != "spec.frontend.tls.acme.dnsUpdate.tsigKeyFile" || !strings.Contains(ferr.Reason, c.want) || strings.Contains(ferr.Reason, "c2Vj") {
			t.Errorf("%s: got %v, want %q", c.name, ferr, c.want)
		}
	}
}
