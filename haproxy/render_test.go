package haproxy_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// TestGolden renders every testdata/NAME.yaml (with NAME.members.yaml when
// present), twice, compares the result with NAME.cfg.golden, and has the
// real haproxy validate the golden file.
func TestGolden(t *testing.T) {
	cases, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, in := range cases {
		if strings.HasSuffix(in, ".members.yaml") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			lb := loadValid(t, in)
			members := loadMembers(t, strings.TrimSuffix(in, ".yaml")+".members.yaml")
			first := haproxy.Render(lb, haproxy.Assign(lb, members, nil), haproxy.Options{})
			second := haproxy.Render(lb, haproxy.Assign(lb, members, nil), haproxy.Options{})
			if !bytes.Equal(first, second) {
				t.Fatalf("two renders of the same input differ")
			}
			golden := strings.TrimSuffix(in, ".yaml") + ".cfg.golden"
			if *update {
				if err := os.WriteFile(golden, first, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./haproxy -update to create it)", err)
			}
			if !bytes.Equal(first, want) {
				t.Errorf("render differs from %s (go test ./haproxy -update rewrites it):\n%s", golden, lineDiff(want, first))
			}
			haproxyCheck(t, want, lb.Metadata.Name)
		})
	}
	if n < 5 {
		t.Fatalf("only %d golden cases found", n)
	}
}

func loadValid(t testing.TB, path string) *specs.LoadBalancer {
	t.Helper()
	lbs, err := specs.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	lb := lbs[0]
	specs.SetDefaults(lb)
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Fatalf("%s is invalid:\n%v", path, errs)
	}
	return lb
}

func loadMembers(t testing.TB, path string) map[string][]haproxy.Member {
	t.Helper()
	members := map[string][]haproxy.Member{}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return members
	} else if err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict(data, &members); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return members
}

// backendFileRE finds the backendTLS files a config names.
var backendFileRE = regexp.MustCompile(` (crt|ca-file) ` + regexp.QuoteMeta(haproxy.CertDir) + `/(\S+)`)

// haproxyCheck runs the real `haproxy -c` on cfg, with
// the certificate directory pointed at a freshly generated certificate.
// Every config the renderer writes must pass it.
func haproxyCheck(t testing.TB, cfg []byte, lbName string) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed: these tests check every config with the real haproxy -c (apt-get install haproxy, or make deps)")
	}
	// Not t.TempDir(): a fuzz seed's name holds '#', which starts a comment.
	dir, err := os.MkdirTemp("", "incuslb-check-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// Two certificates in the crt-list, as a LoadBalancer with two.
	testcert.Write(dir, lbName+".pem", "lb.example.org")
	testcert.Write(dir, lbName+"-1.pem", "other.example.org")
	list := fmt.Sprintf("%s/%s.pem\n%s/%s-1.pem\n", dir, lbName, dir, lbName)
	if err := os.WriteFile(filepath.Join(dir, lbName+".crt-list"), []byte(list), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, lbName+".acme-challenge.map"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The pools' client certificates and CA bundles (backendTLS).
	ca := testcert.NewCA("Backend CA")
	for _, m := range backendFileRE.FindAllSubmatch(cfg, -1) {
		body := ca.PEM
		if string(m[1]) == "crt" {
			body = ca.Client("lb-client")
		}
		if err := os.WriteFile(filepath.Join(dir, string(m[2])), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg = bytes.ReplaceAll(cfg, []byte(haproxy.CertDir+"/"), []byte(dir+"/"))
	// The server-state file a reload writes: a version line at least.
	state := filepath.Join(dir, "server-state")
	if err := os.WriteFile(state, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg = bytes.ReplaceAll(cfg, []byte(haproxy.ServerStateFile), []byte(state))
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c rejects the config: %v\n%s\n--- config ---\n%s", err, out, cfg)
	}
	// Warnings count as failures, but for a static server's DNS name, which
	// cannot resolve in an offline sandbox (init-addr none parks it).
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "[WARNING]") && !strings.Contains(line, "could not resolve address") {
			t.Fatalf("haproxy -c warns: %s\n--- config ---\n%s", line, cfg)
		}
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got []byte) string {
	w := strings.Split(string(want), "\n")
	g := strings.Split(string(got), "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			shown++
			fmt.Fprintf(&b, "line %d:\n  - %s\n  + %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// TestExpectStatusPatternsPassHAProxy: patterns of the expectStatus grammar
// that validate also load in HAProxy's PCRE (as `$*` once did not).
func TestExpectStatusPatternsPassHAProxy(t *testing.T) {
	patterns := []string{
		"^[23]", "^(200|204)$", "^2[0-9]{2}$", "2", ".", "^2..$", "^[2-3]0?.$", "(2|3)?", "^(20[04]|30[12]){1}$",
		"2{0,1}", "^[0-9]{3}$", "[1-25-9]", "^(2.?|3[0-9]{1,2})$", "^(20[0-4]|30[12]|2.?){1,2}$",
	}
	lb := &specs.LoadBalancer{APIVersion: specs.APIVersion, Kind: specs.Kind, Metadata: specs.ObjectMeta{Name: "patterns"},
		Spec: specs.LoadBalancerSpec{Routes: []specs.Route{{Pool: "p0"}}}}
	for i, re := range patterns {
		lb.Spec.Pools = append(lb.Spec.Pools, specs.Pool{Name: fmt.Sprintf("p%d", i),
			Servers:     []specs.Server{{Name: "s", Address: "10.0.0.1:80"}},
			HealthCheck: specs.HealthCheck{ExpectStatus: re}})
	}
	specs.SetDefaults(lb)
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Fatal(errs)
	}
	haproxyCheck(t, haproxy.Render(lb, nil, haproxy.Options{}), lb.Metadata.Name)
}

// A pair's replicas share their rate limits' tables, each at its own
// address; a replica missing an address, or a list without this replica,
// falls back to the local peer alone.
func TestRenderPairPeers(t *testing.T) {
	lb := loadValid(t, "testdata/ratelimit.yaml")
	pair := []haproxy.Peer{{Name: "lb-1", Address: "10.0.0.11"}, {Name: "lb-2", Address: "10.0.0.12"}}
	for _, tc := range []struct {
		name  string
		opts  haproxy.Options
		lines []string
	}{
		{"pair", haproxy.Options{Peers: pair, LocalPeer: "lb-2"},
			[]string{"    localpeer lb-2", "    peer lb-1 10.0.0.11:10000", "    peer lb-2 10.0.0.12:10000"}},
		{"an address unknown", haproxy.Options{Peers: []haproxy.Peer{pair[0], {Name: "lb-2"}}, LocalPeer: "lb-2"},
			[]string{"    localpeer incuslb", "    peer incuslb 127.0.0.1:10000"}},
		{"not among them", haproxy.Options{Peers: pair, LocalPeer: "lb-3"},
			[]string{"    localpeer incuslb", "    peer incuslb 127.0.0.1:10000"}},
		{"single", haproxy.Options{}, []string{"    localpeer incuslb", "    peer incuslb 127.0.0.1:10000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := haproxy.Render(lb, nil, tc.opts)
			for _, l := range tc.lines {
				if !bytes.Contains(cfg, []byte("\n"+l+"\n")) {
					t.Errorf("no line %q in:\n%s", l, cfg)
				}
			}
			got := haproxy.ParsePeers(cfg)
			if tc.name == "pair" && (got["lb-1"] != "10.0.0.11" || got["lb-2"] != "10.0.0.12" || len(got) != 2) {
				t.Errorf("ParsePeers = %v", got)
			}
			if tc.name == "single" && len(got) != 0 {
				t.Errorf("ParsePeers of a single LB = %v, want none", got)
			}
		})
	}
}
