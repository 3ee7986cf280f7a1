package specs_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

func valid(t *testing.T) *specs.LoadBalancer {
	t.Helper()
	lbs, err := specs.Parse([]byte(base), "base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return lbs[0]
}

// TestValidate mutates a valid spec and checks that each mutation is
// rejected at the right path (and that the base itself is valid).
func TestValidate(t *testing.T) {
	static := specs.Pool{Name: "git", Servers: []specs.Server{{Name: "forgejo", Address: "10.0.20.105:3000"}}}
	cases := []struct {
		name   string
		mutate func(lb *specs.LoadBalancer)
		want   []string // "path: reason fragment"
	}{
		{"base is valid", func(*specs.LoadBalancer) {}, nil},
		{"wrong apiVersion", func(lb *specs.LoadBalancer) { lb.APIVersion = "v1" }, []string{"apiVersion: must be"}},
		{"wrong kind", func(lb *specs.LoadBalancer) { lb.Kind = "Service" }, []string{"kind: must be"}},
		{"bad name", func(lb *specs.LoadBalancer) { lb.Metadata.Name, lb.Spec.Instance.Name = "Edge_1", "edge" }, []string{"metadata.name: must be a DNS label"}},
		{"duplicate pool", func(lb *specs.LoadBalancer) { lb.Spec.Pools = append(lb.Spec.Pools, lb.Spec.Pools[0]) },
			[]string{"spec.pools[1].name: duplicate pool name"}},
		{"route to no pool", func(lb *specs.LoadBalancer) { lb.Spec.Routes[0].Pool = "nope" },
			[]string{`spec.routes[0].pool: names no pool in spec.pools: "nope"`}},
		{"no routes", func(lb *specs.LoadBalancer) { lb.Spec.Routes = nil }, []string{"spec.routes: at least one route"}},
		{"catch-all not last", func(lb *specs.LoadBalancer) {
			lb.Spec.Routes = append(lb.Spec.Routes, specs.Route{Host: "a.example.org", Pool: "api_pool"})
		}, []string{"spec.routes[0]: matches every request"}},
		{"same match twice", func(lb *specs.LoadBalancer) {
			r := specs.Route{Host: "a.example.org", Pool: "api_pool"}
			lb.Spec.Routes = []specs.Route{r, r}
		}, []string{"spec.routes[1]: never matches"}},
		{"port out of range", func(lb *specs.LoadBalancer) { lb.Spec.Frontend.HTTPPort = 70000 },
			[]string{"spec.frontend.httpPort: must be between 1 and 65535, not 70000"}},
		{"pool port zero", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Port = -1 },
			[]string{"spec.pools[0].port: must be between 1 and 65535"}},
		{"the parked port", func(lb *specs.LoadBalancer) { lb.Spec.Stats.Port = 1 },
			[]string{"spec.stats.port: port 1 is reserved"}},
		{"port used twice", func(lb *specs.LoadBalancer) { lb.Spec.Stats.Port = 80 },
			[]string{"spec.stats.port: port 80 is already used by spec.frontend.httpPort"}},
		{"https port clashes only with tls", func(lb *specs.LoadBalancer) {
			lb.Spec.Frontend.HTTPSPort = 80
			lb.Spec.Frontend.TLS = &specs.TLSSpec{CertificateFile: "/x.pem"}
		}, []string{"spec.frontend.httpsPort: port 80 is already used"}},
		{"tls without file", func(lb *specs.LoadBalancer) { lb.Spec.Frontend.TLS = &specs.TLSSpec{} },
			[]string{"spec.frontend.tls.certificateFile: is required"}},
		{"certificates only", func(lb *specs.LoadBalancer) {
			lb.Spec.Frontend.TLS = &specs.TLSSpec{Certificates: []specs.CertificateSource{{File: "/a.pem"}}}
		}, nil},
		{"certificate named twice", func(lb *specs.LoadBalancer) {
			lb.Spec.Frontend.TLS = &specs.TLSSpec{CertificateFile: "/a.pem", Certificates: []specs.CertificateSource{{File: "/b.pem"}, {File: "//a.pem"}}}
		}, []string{"spec.frontend.tls.certificates[1].file: names the same file as spec.frontend.tls.certificateFile"}},
		{"certificate without file", func(lb *specs.LoadBalancer) {
			lb.Spec.Frontend.TLS = &specs.TLSSpec{Certificates: []specs.CertificateSource{{}}}
		}, []string{"spec.frontend.tls.certificates[0].file: is required"}},
		{"bad duration", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].HealthCheck.Interval = specs.Dur(10) },
			[]string{"spec.pools[0].healthCheck.interval: must be at least 100ms"}},
		{"down interval too short", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].HealthCheck.DownInterval = specs.Dur(50e6) },
			[]string{"spec.pools[0].healthCheck.downInterval: must be at least 100ms, not 50ms"}},
		{"explicit zero fast interval", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].HealthCheck.FastInterval = specs.Dur(0) },
			[]string{"spec.pools[0].healthCheck.fastInterval: must be at least 100ms, not 0s"}},
		{"unknown join", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Join = "eager" },
			[]string{`spec.pools[0].join: must be checked or immediate, not "eager"`}},
		{"join on a static pool", func(lb *specs.LoadBalancer) {
			p := static
			p.Join = specs.JoinImmediate
			lb.Spec.Pools = append(lb.Spec.Pools, p)
		}, []string{"spec.pools[1].join: applies to selector pools only"}},
		{"too long", func(lb *specs.LoadBalancer) { lb.Spec.Defaults.Timeouts.Tunnel = specs.Dur(48 * 3600e9) },
			[]string{"spec.defaults.timeouts.tunnel: must be at most 24h0m0s"}},
		{"regex does not compile", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].HealthCheck.ExpectStatus = "^[23" },
			[]string{"spec.pools[0].healthCheck.expectStatus: must be a status pattern"}},
		{"unknown balance", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Balance = "random" },
			[]string{`spec.pools[0].balance: must be one of roundrobin, leastconn or uri, not "random"`}},
		{"selector and servers", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Servers = static.Servers },
			[]string{"spec.pools[0]: set either selector or servers, not both"}},
		{"neither selector nor servers", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Selector = nil },
			[]string{"spec.pools[0]: one of selector or servers is required"}},
		{"sticky with uri", func(lb *specs.LoadBalancer) {
			lb.Spec.Pools[0].Balance = "uri"
			lb.Spec.Pools[0].Sticky = &specs.Sticky{Cookie: "S"}
		}, []string{"spec.pools[0].sticky: does not combine with balance uri"}},
		{"static server address", func(lb *specs.LoadBalancer) {
			p := static
			p.Servers = []specs.Server{{Name: "a", Address: "10.0.0.1"}, {Name: "a", Address: "[::1]:80"}}
			lb.Spec.Pools = append(lb.Spec.Pools, p)
		}, []string{"spec.pools[1].servers[0].address: must be host:port", "spec.pools[1].servers[1].name: duplicate server name"}},
		{"port on static pool", func(lb *specs.LoadBalancer) {
			p := static
			p.Port = 80
			lb.Spec.Pools = append(lb.Spec.Pools, p)
		}, []string{"spec.pools[1].port: applies to selector pools only"}},
		{"backend tls verify", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{Verify: "maybe"} },
			[]string{"spec.pools[0].backendTLS.verify: must be none or required"}},
		{"fall and rise", func(lb *specs.LoadBalancer) {
			lb.Spec.Pools[0].HealthCheck.Fall = -1
			lb.Spec.Pools[0].HealthCheck.Rise = 1000
		}, []string{"spec.pools[0].healthCheck.fall: must be between 1 and 100", "spec.pools[0].healthCheck.rise: must be between 1 and 100"}},
		{"slots", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].Slots = 5000 }, []string{"spec.pools[0].slots: must be between 1 and 1000"}},
		{"instance name", func(lb *specs.LoadBalancer) { lb.Spec.Instance.Name = "9lives" }, []string{"spec.instance.name: must be an Incus instance name"}},
		{"image", func(lb *specs.LoadBalancer) { lb.Spec.Instance.Image = "images:debian 12" }, []string{"spec.instance.image: must be an image alias"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lb := valid(t)
			tc.mutate(lb)
			specs.SetDefaults(lb)
			expect(t, specs.Validate(lb), tc.want)
		})
	}
}

// expect checks that got holds exactly the wanted problems, each given as
// "path: reason fragment".
func expect(t *testing.T, got specs.ErrorList, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(got), len(want), got)
	}
	for _, w := range want {
		found := false
		for _, e := range got {
			if strings.Contains(e.Path+": "+e.Reason, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing %q in:\n%v", w, got)
		}
	}
}

// TestHostileStrings feeds every string field that reaches haproxy.cfg with
// values that would split a line, start a comment, quote, or expand a
// variable; each must be rejected at its own path.
func TestHostileStrings(t *testing.T) {
	hostile := []string{
		"a.example.org\nbackend evil", "a b", "a#b", `a"b`, "a'b", `a\b`, "${HOME}", "a\tb", "a\rb", "a}b", "",
	}
	fields := []struct {
		path string
		set  func(lb *specs.LoadBalancer, v string)
	}{
		{"spec.routes[0].host", func(lb *specs.LoadBalancer, v string) {
			lb.Spec.Routes = []specs.Route{{Host: v + "x", Pool: "api_pool"}}
		}},
		{"spec.routes[0].pathPrefix", func(lb *specs.LoadBalancer, v string) {
			lb.Spec.Routes = []specs.Route{{PathPrefix: "/" + v + "x", Pool: "api_pool"}}
		}},
		{"spec.pools[0].healthCheck.path", func(lb *specs.LoadBalancer, v string) { lb.Spec.Pools[0].HealthCheck.Path = "/" + v + "x" }},
		{"spec.pools[0].healthCheck.host", func(lb *specs.LoadBalancer, v string) { lb.Spec.Pools[0].HealthCheck.Host = v + "x" }},
		{"spec.pools[0].healthCheck.expectStatus", func(lb *specs.LoadBalancer, v string) { lb.Spec.Pools[0].HealthCheck.ExpectStatus = "^2" + v }},
		{"spec.pools[0].sticky.cookie", func(lb *specs.LoadBalancer, v string) { lb.Spec.Pools[0].Sticky = &specs.Sticky{Cookie: v + "x"} }},
		{"spec.pools[0].backendTLS.sni", func(lb *specs.LoadBalancer, v string) {
			lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{Verify: "none", SNI: v + "x"}
		}},
		{"spec.pools[0].backendTLS.verifyHost", func(lb *specs.LoadBalancer, v string) {
			lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{VerifyHost: v + "x"}
		}},
		{"spec.pools[0].name", func(lb *specs.LoadBalancer, v string) {
			lb.Spec.Pools[0].Name = "p" + v
			lb.Spec.Routes[0].Pool = "p" + v
		}},
		{"spec.pools[0].selector[user.role]", func(lb *specs.LoadBalancer, v string) { lb.Spec.Pools[0].Selector["user.role"] = v + "x" }},
		{"spec.instance.image", func(lb *specs.LoadBalancer, v string) { lb.Spec.Instance.Image = "img" + v }},
	}
	for _, f := range fields {
		for _, v := range hostile {
			if v == "" {
				continue // appending nothing leaves a valid value
			}
			lb := valid(t)
			f.set(lb, v)
			specs.SetDefaults(lb)
			errs := specs.Validate(lb)
			found := false
			for _, e := range errs {
				if e.Path == f.path {
					found = true
				}
			}
			if !found {
				t.Errorf("%s = %q was not rejected at its path; got %v", f.path, v, errs)
			}
		}
	}
}

func TestValidateFilesChecksTheCertificate(t *testing.T) {
	dir := t.TempDir()
	good := testcert.Write(dir, "good.pem", "edge.example.org")
	pemOnly := testcert.PEM("x.example.org")
	certOnly := pemOnly[:strings.Index(string(pemOnly), "-----BEGIN PRIVATE KEY")]
	other := testcert.PEM("y.example.org")
	keyOther := other[strings.Index(string(other), "-----BEGIN PRIVATE KEY"):]
	files := map[string][]byte{
		"cert-only.pem": certOnly,
		"mismatch.pem":  append(append([]byte{}, certOnly...), keyOther...),
		"garbage.pem":   []byte("hello"),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for file, want := range map[string]string{
		good:                                "",
		filepath.Join(dir, "missing.pem"):   "does not exist",
		filepath.Join(dir, "cert-only.pem"): "holds no PRIVATE KEY block",
		filepath.Join(dir, "mismatch.pem"):  "do not form a pair",
		filepath.Join(dir, "garbage.pem"):   "is not PEM",
	} {
		lb := valid(t)
		lb.Spec.Frontend.TLS = &specs.TLSSpec{CertificateFile: file}
		errs := specs.ValidateFiles(lb)
		switch {
		case want == "" && len(errs) > 0:
			t.Errorf("%s: unexpected %v", file, errs)
		case want != "" && (len(errs) != 1 || errs[0].Path != "spec.frontend.tls.certificateFile" || !strings.Contains(errs[0].Reason, want)):
			t.Errorf("%s: got %v, want %q", file, errs, want)
		}
		for _, e := range errs {
			if strings.Contains(e.Error(), "BEGIN") || strings.Contains(e.Error(), "MII") {
				t.Errorf("error quotes key material: %v", e)
			}
		}
	}
}

func TestSetDefaultsIsTheSeeds(t *testing.T) {
	lb := valid(t)
	specs.SetDefaults(lb)
	p := lb.Spec.Pools[0]
	hc := p.HealthCheck
	if hc.Interval.Seconds() != 5 || hc.Fall != 3 || hc.Rise != 2 || p.SlowStart.Seconds() != 30 ||
		lb.Spec.Defaults.DrainTimeout.Seconds() != 30 || lb.Spec.Stats.Port != 9100 ||
		lb.Spec.Frontend.HTTPPort != 80 || lb.Spec.Frontend.HTTPSPort != 443 {
		t.Fatalf("defaults are not the seed's: %+v", lb.Spec)
	}
	if lb.Spec.Instance.Name != "edge" || p.Project != "default" || p.NIC != "eth0" || p.Balance != "roundrobin" {
		t.Fatalf("instance/pool defaults: %+v %+v", lb.Spec.Instance, p)
	}
	again := *lb
	specs.SetDefaults(&again)
	if len(specs.Validate(&again)) != 0 {
		t.Fatal("defaulting twice broke the spec")
	}
}

func TestValidateSetRejectsSharedNamesAndInstances(t *testing.T) {
	a, b := valid(t), valid(t)
	b.Spec.Instance.Name = "edge"
	specs.SetDefaults(a)
	specs.SetDefaults(b)
	errs := specs.ValidateSet([]*specs.LoadBalancer{a, b})
	expect(t, errs, []string{"metadata.name: duplicate LoadBalancer", "spec.instance.name: instance default/edge is already used"})
}

func TestValidateSetPutsEachProblemOnItsLoadBalancer(t *testing.T) {
	a, b, c := valid(t), valid(t), valid(t)
	a.Source, a.Doc = "a.yaml", 1
	b.Source, b.Doc = "a.yaml", 2
	b.Metadata.Name, b.Spec.Routes[0].Pool = "other", "nope" // its own problem, and a's instance
	c.Source = "c.yaml"
	c.Spec.Instance.Name = "edge2" // a's name, its own instance
	for _, lb := range []*specs.LoadBalancer{a, b, c} {
		specs.SetDefaults(lb)
	}
	b.Spec.Instance.Name = "edge"
	errs := specs.ValidateSet([]*specs.LoadBalancer{a, b, c})
	got := map[string]string{}
	for _, e := range errs {
		got[e.Path] = e.Error()
	}
	want := map[string]string{
		"spec.routes[0].pool": `a.yaml: document 2 (LoadBalancer "other"): spec.routes[0].pool: names no pool in spec.pools: "nope"`,
		"spec.instance.name":  `a.yaml: document 2 (LoadBalancer "other"): spec.instance.name: instance default/edge is already used by LoadBalancer "edge"`,
		"metadata.name":       `c.yaml: metadata.name: duplicate LoadBalancer "edge" (also in a.yaml document 1)`,
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%v", len(errs), len(want), errs)
	}
	for path, w := range want {
		if got[path] != w {
			t.Errorf("%s:\n got %s\nwant %s", path, got[path], w)
		}
	}
	if errs[len(errs)-1].LB != "edge" || errs[len(errs)-1].Source != "c.yaml" {
		t.Errorf("the duplicate name is not on the later document: %+v", errs[len(errs)-1])
	}
}

// TestBackendTLSVerifyRequiredNeedsAName: verify required with no name
// checks the chain only; the spec must name the host to check.
func TestBackendTLSVerifyRequiredNeedsAName(t *testing.T) {
	for _, tc := range []struct {
		name string
		tls  specs.BackendTLS
		want []string
	}{
		{"required, no name", specs.BackendTLS{Verify: "required"},
			[]string{"spec.pools[0].backendTLS.verifyHost: is required with verify: required when sni is not set"}},
		{"default verify, no name", specs.BackendTLS{},
			[]string{"spec.pools[0].backendTLS.verifyHost: is required with verify: required"}},
		{"sni names it", specs.BackendTLS{SNI: "api.internal"}, nil},
		{"verifyHost names it", specs.BackendTLS{VerifyHost: "api.internal"}, nil},
		{"both", specs.BackendTLS{SNI: "a.internal", VerifyHost: "b.internal"}, nil},
		{"none needs no name", specs.BackendTLS{Verify: "none"}, nil},
		{"verifyHost with none", specs.BackendTLS{Verify: "none", VerifyHost: "api.internal"},
			[]string{"spec.pools[0].backendTLS.verifyHost: has no effect with verify: none"}},
		{"verifyHost is a host", specs.BackendTLS{VerifyHost: "a b"},
			[]string{`spec.pools[0].backendTLS.verifyHost: must be a DNS name (ASCII letters, digits, '-' and '.'), not "a b"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lb := valid(t)
			b := tc.tls
			lb.Spec.Pools[0].BackendTLS = &b
			specs.SetDefaults(lb)
			expect(t, specs.Validate(lb), tc.want)
		})
	}
}

// TestExpectStatusGrammar: only the documented subset, which Go and PCRE
// read alike, is accepted; PCRE-only and Go-only forms are refused, as is
// anything outside the subset that both would take.
func TestExpectStatusGrammar(t *testing.T) {
	accepted := []string{
		"^[23]", "^(200|204)$", "^2[0-9]{2}$", "2", ".", "^2..$", "^[2-3]0?.$", "(2|3)?", "^(20[04]|30[12]){1}$",
		"2{0,1}", "^[0-9]{3}$", "[1-25-9]", "^(2.?|3[0-9]{1,2})$", "^" + strings.Repeat("2", 62) + "$",
	}
	for _, s := range accepted {
		lb := valid(t)
		lb.Spec.Pools[0].HealthCheck.ExpectStatus = s
		specs.SetDefaults(lb)
		if errs := specs.Validate(lb); len(errs) > 0 {
			t.Errorf("%q refused: %v", s, errs)
		}
		if _, err := regexp.Compile(s); err != nil {
			t.Errorf("%q is accepted but Go's regexp refuses it: %v", s, err)
		}
	}
	refused := []string{
		"", "$*", "^*", "^2*", "2+", "2*", "2??", "2*?", "2{1}?", "2?{1}", "2{4}", "2{1,4}", "2{,3}", "2{3,1}", "2{0}", "2{0,0}",
		"2{10}", "2{1", "2{", "[3-2]", "[]", "[^2]", "[2", "[a]", "[2-]", "[-2]", "()", "(2|)", "(|2)", "(2", "2)", "((2))",
		"(2|(3))", "2|3", "^", "$", "^$", "^^2", "2$$", "2$3", "a", "2 ", " 2", "2\n", "2#", `\d`, `\z`, `2\`, "(?i)2",
		"(?:2)", "(?=2)", "(?>2)", "2++", "2*+", `\K2`, "(?P<x>2)", "[[:digit:]]", `\pN`, "[2-3-4]", "2{1,2}{1}",
		"^" + strings.Repeat("2", 63) + "$", "２００", "2\u0660",
	}
	for _, s := range refused {
		lb := valid(t)
		lb.Spec.Pools[0].HealthCheck.ExpectStatus = s
		if s == "" {
			lb.Spec.Defaults.HealthCheck.ExpectStatus = "x" // so that the default does not fill it
		}
		specs.SetDefaults(lb)
		errs := specs.Validate(lb)
		found := false
		for _, e := range errs {
			if e.Path == "spec.pools[0].healthCheck.expectStatus" && strings.Contains(e.Reason, "must be a status pattern") {
				found = true
			}
		}
		if !found {
			t.Errorf("%q was not refused: %v", s, errs)
		}
	}
	lb := valid(t)
	specs.SetDefaults(lb)
	if lb.Spec.Pools[0].HealthCheck.ExpectStatus != specs.DefaultExpectStatus || len(specs.Validate(lb)) > 0 {
		t.Errorf("the default %q is not valid", specs.DefaultExpectStatus)
	}
}

// TestHostsAreASCII: letters that case-fold to ASCII ones (U+212A KELVIN
// SIGN to 'k', U+017F LONG S to 's') are not host characters.
func TestHostsAreASCII(t *testing.T) {
	for _, host := range []string{"\u212Aelvin.example.org", "api.example.or\u017F", "caf\u00e9.example.org", "ex\u0430mple.org"} {
		fields := []struct {
			path string
			set  func(lb *specs.LoadBalancer)
		}{
			{"spec.routes[0].host", func(lb *specs.LoadBalancer) { lb.Spec.Routes[0].Host = host }},
			{"spec.pools[0].healthCheck.host", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].HealthCheck.Host = host }},
			{"spec.pools[0].backendTLS.sni", func(lb *specs.LoadBalancer) {
				lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{Verify: "none", SNI: host}
			}},
			{"spec.pools[0].backendTLS.verifyHost", func(lb *specs.LoadBalancer) { lb.Spec.Pools[0].BackendTLS = &specs.BackendTLS{VerifyHost: host} }},
			{"spec.pools[1].servers[0].address", func(lb *specs.LoadBalancer) {
				lb.Spec.Pools = append(lb.Spec.Pools, specs.Pool{Name: "git", Servers: []specs.Server{{Name: "s", Address: host + ":80"}}})
			}},
		}
		for _, f := range fields {
			lb := valid(t)
			lb.Spec.Routes = []specs.Route{{Host: "ok.example.org", Pool: "api_pool"}, {Pool: "api_pool"}}
			f.set(lb)
			specs.SetDefaults(lb)
			errs := specs.Validate(lb)
			if len(errs) != 1 || errs[0].Path != f.path {
				t.Errorf("%s = %q: got %v", f.path, host, errs)
			}
		}
	}
	lb := valid(t)
	lb.Spec.Routes = []specs.Route{{Host: "Kelvin.Example.ORG", Pool: "api_pool"}, {Pool: "api_pool"}}
	specs.SetDefaults(lb)
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Errorf("ASCII upper case is a host: %v", errs)
	}
}

// TestExplicitZeroDurations: "0s" is zero, a field left out is the default.
func TestExplicitZeroDurations(t *testing.T) {
	parse := func(extra string) *specs.LoadBalancer {
		t.Helper()
		lbs, err := specs.Parse([]byte(extra), "zero.yaml")
		if err != nil {
			t.Fatal(err)
		}
		specs.SetDefaults(lbs[0])
		if errs := specs.Validate(lbs[0]); len(errs) > 0 {
			t.Fatal(errs)
		}
		return lbs[0]
	}
	zero := parse(strings.Replace(base, "spec:\n", "spec:\n  defaults: {slowStart: 0s, drainTimeout: 0s}\n", 1))
	if d := zero.Spec.Defaults; d.SlowStart.Duration != 0 || d.DrainTimeout.Duration != 0 || zero.Spec.Pools[0].SlowStart.Duration != 0 {
		t.Errorf("explicit zeros: defaults %v/%v, pool %v", d.SlowStart, d.DrainTimeout, zero.Spec.Pools[0].SlowStart)
	}
	unset := parse(base)
	if d := unset.Spec.Defaults; d.SlowStart.Duration != specs.DefaultSlowStart || d.DrainTimeout.Duration != specs.DefaultDrainTimeout {
		t.Errorf("unset: %v/%v", d.SlowStart, d.DrainTimeout)
	}
	pool := parse(strings.Replace(base, "      port: 8080\n", "      port: 8080\n      slowStart: 0s\n", 1))
	if pool.Spec.Pools[0].SlowStart.Duration != 0 || pool.Spec.Defaults.SlowStart.Duration != specs.DefaultSlowStart {
		t.Errorf("pool zero: %v, defaults %v", pool.Spec.Pools[0].SlowStart, pool.Spec.Defaults.SlowStart)
	}
	null := parse(strings.Replace(base, "spec:\n", "spec:\n  defaults: {slowStart: null, drainTimeout: ~}\n", 1))
	if d := null.Spec.Defaults; d.SlowStart.Duration != specs.DefaultSlowStart || d.DrainTimeout.Duration != specs.DefaultDrainTimeout {
		t.Errorf("null is unset: %v/%v", d.SlowStart, d.DrainTimeout)
	}
	// Defaulting twice keeps the zeros; JSON keeps them too.
	specs.SetDefaults(zero)
	js, err := json.Marshal(zero)
	if err != nil {
		t.Fatal(err)
	}
	if zero.Spec.Defaults.DrainTimeout.Duration != 0 || !strings.Contains(string(js), `"drainTimeout":"0s"`) {
		t.Errorf("zero lost: %s", js)
	}
	// An explicit zero where zero is not allowed is an error, not the default.
	bad, err := specs.Parse([]byte(strings.Replace(base, "spec:\n", "spec:\n  defaults: {timeouts: {connect: 0s}}\n", 1)), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	specs.SetDefaults(bad[0])
	expect(t, specs.Validate(bad[0]), []string{"spec.defaults.timeouts.connect: must be at least 1ms, not 0s"})
}

// TestCountLimits: lists are capped, with the error at the list's path.
func TestCountLimits(t *testing.T) {
	lb := valid(t)
	p := lb.Spec.Pools[0]
	for i := 0; i < 65; i++ {
		p.Selector[fmt.Sprintf("user.k%d", i)] = "v"
	}
	lb.Spec.Pools = nil
	for i := 0; i < 257; i++ {
		q := p
		q.Name = fmt.Sprintf("p%d", i)
		lb.Spec.Pools = append(lb.Spec.Pools, q)
	}
	static := specs.Pool{Name: "static"}
	for i := 0; i < 1025; i++ {
		static.Servers = append(static.Servers, specs.Server{Name: fmt.Sprintf("s%d", i), Address: "10.0.0.1:80"})
	}
	lb.Spec.Pools = append(lb.Spec.Pools, static)
	lb.Spec.Routes = nil
	for i := 0; i < 1025; i++ {
		lb.Spec.Routes = append(lb.Spec.Routes, specs.Route{PathPrefix: fmt.Sprintf("/%d", i), Pool: "p0"})
	}
	specs.SetDefaults(lb)
	var got []string
	for _, e := range specs.Validate(lb) {
		if e.Path == "spec.pools" || e.Path == "spec.routes" || e.Path == "spec.pools[257].servers" || e.Path == "spec.pools[0].selector" {
			got = append(got, e.Path+": "+e.Reason)
		}
	}
	want := []string{
		"spec.pools[0].selector: at most 64 keys, not 66",
		"spec.pools[257].servers: at most 1024 servers, not 1025",
		"spec.pools: at most 256 pools, not 258",
		"spec.routes: at most 1024 routes, not 1025",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
