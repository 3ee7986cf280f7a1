package specs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// TestBackendTLSFiles: each backendTLS file is read and checked, and each
// problem names its field, never quoting the file's content.
func TestBackendTLSFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA("Backend CA")
	client := ca.Client("lb-client")
	certOnly := client[:strings.Index(string(client), "-----BEGIN PRIVATE KEY")]
	other := ca.Client("other")
	keyOther := other[strings.Index(string(other), "-----BEGIN PRIVATE KEY"):]
	leaf := ca.Server("api.internal")
	files := map[string][]byte{
		"client.pem":    client,
		"ca.pem":        ca.PEM,
		"ca2.pem":       append(append([]byte{}, ca.PEM...), testcert.NewCA("Second CA").PEM...),
		"selfsig.pem":   testcert.PEM("pinned.internal")[:strings.Index(string(testcert.PEM("pinned.internal")), "-----BEGIN PRIVATE KEY")],
		"cert-only.pem": certOnly,
		"mismatch.pem":  append(append([]byte{}, certOnly...), keyOther...),
		"garbage.pem":   []byte("hello"),
		"leaf.pem":      leaf[:strings.Index(string(leaf), "-----BEGIN PRIVATE KEY")],
		"big.pem":       make([]byte, specs.MaxCertificateFile+1),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	in := func(f string) string { return filepath.Join(dir, f) }
	const cc, caf = "spec.pools[0].backendTLS.clientCertificateFile", "spec.pools[0].backendTLS.ca"
	for _, tc := range []struct {
		name       string
		cert, ca   string
		want       []string // "path: reason fragment"
		wantLoaded int
	}{
		{"client and ca", in("client.pem"), in("ca.pem"), nil, 2},
		{"client alone", in("client.pem"), "", nil, 1},
		{"ca alone", "", in("ca.pem"), nil, 1},
		{"a bundle of two CAs", "", in("ca2.pem"), nil, 1},
		{"a self-signed certificate pinned as the CA", "", in("selfsig.pem"), nil, 1},
		{"missing client", in("nope.pem"), "", []string{cc + ": file " + in("nope.pem") + " does not exist"}, 0},
		{"missing ca", "", in("nope.pem"), []string{caf + ": file " + in("nope.pem") + " does not exist"}, 0},
		{"client without key", in("cert-only.pem"), "", []string{cc + ": " + in("cert-only.pem") + " holds no PRIVATE KEY block"}, 0},
		{"key of another certificate", in("mismatch.pem"), "", []string{cc + ": " + in("mismatch.pem") + ": certificate and key do not form a pair"}, 0},
		{"client not PEM", in("garbage.pem"), "", []string{cc + ": " + in("garbage.pem") + " is not PEM"}, 0},
		{"ca not PEM", "", in("garbage.pem"), []string{caf + ": " + in("garbage.pem") + " is not PEM"}, 0},
		{"a key in the ca", "", in("client.pem"), []string{caf + ": " + in("client.pem") + " holds a private key"}, 0},
		{"a leaf as the ca", "", in("leaf.pem"), []string{caf + ": " + in("leaf.pem") + ": certificate 1 (api.internal) is neither a CA certificate"}, 0},
		{"client too big", in("big.pem"), "", []string{cc + ": cannot read " + in("big.pem") + ": larger than"}, 0},
		{"ca too big", "", in("big.pem"), []string{caf + ": cannot read " + in("big.pem") + ": larger than"}, 0},
		{"both bad", in("garbage.pem"), in("garbage.pem"), []string{cc + ": ", caf + ": "}, 0},
		{"a directory", dir, "", []string{cc + ": cannot read " + dir + ": not a regular file (it is a directory)"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb := valid(t)
			lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{SNI: "api.internal", ClientCertificateFile: tc.cert, CA: tc.ca}
			specs.SetDefaults(lb)
			expect(t, specs.Validate(lb), nil)
			errs := specs.ValidateFiles(lb)
			expect(t, errs, tc.want)
			for _, e := range errs {
				if strings.Contains(e.Error(), "BEGIN") || strings.Contains(e.Error(), "MII") {
					t.Errorf("error quotes key material: %v", e)
				}
			}
			got, errs2 := specs.LoadBackendFiles(lb, specs.LoadCertificate, specs.LoadCABundle)
			expect(t, errs2, tc.want)
			if len(got) != tc.wantLoaded {
				t.Fatalf("loaded %d files, want %d", len(got), tc.wantLoaded)
			}
			for _, f := range got {
				if f.Pool != lb.Spec.Pools[0].Name || !strings.HasPrefix(f.Field, "spec.pools[0].backendTLS.") {
					t.Errorf("file %+v is not placed", f.Field)
				}
				if f.Kind == specs.BackendCA && strings.Contains(string(f.PEM), "PRIVATE KEY") {
					t.Errorf("a CA bundle carries a key")
				}
			}
		})
	}
}

// TestBackendTLSFilesUnderTheRoot: the files must lie under the
// certificate root, as frontend certificates must.
func TestBackendTLSFilesUnderTheRoot(t *testing.T) {
	root, out := t.TempDir(), t.TempDir()
	ca := testcert.NewCA("Backend CA")
	for dir, files := range map[string]map[string][]byte{root: {"ca.pem": ca.PEM, "client.pem": ca.Client("c")}, out: {"ca.pem": ca.PEM}} {
		for name, body := range files {
			if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	lb := valid(t)
	lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{SNI: "api.internal", ClientCertificateFile: "client.pem", CA: filepath.Join(out, "ca.pem")}
	specs.SetDefaults(lb)
	expect(t, specs.ValidateFilesUnder(lb, root), []string{"spec.pools[0].backendTLS.ca: certificate file " + filepath.Join(out, "ca.pem") + " is outside the certificate root"})
	lb.Spec.Pools[0].BackendTLS.CA = "ca.pem"
	expect(t, specs.ValidateFilesUnder(lb, root), nil)
}

func TestBackendTLSCANeedsVerify(t *testing.T) {
	lb := valid(t)
	lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{Verify: "none", CA: "ca.pem", ClientCertificateFile: "client.pem"}
	specs.SetDefaults(lb)
	expect(t, specs.Validate(lb), []string{"spec.pools[0].backendTLS.ca: has no effect with verify: none"})
}
