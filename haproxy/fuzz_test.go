package haproxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// FuzzValidateRender: any spec that validates renders a config that the
// real haproxy -c accepts, with members in its selector pools, and renders
// the same bytes twice. Each input is tried twice: as YAML, and as the
// decisions of a structural generator (genLoadBalancer) that reaches every
// field of the spec with valid and hostile values, which mutated YAML
// rarely does.
func FuzzValidateRender(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "../specs/examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, uint8(3))
		}
	}
	// Go's regexp accepts `$*`, HAProxy's PCRE does not.
	f.Add([]byte(`apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: dollar}
spec:
  routes: [{pool: web}]
  pools: [{name: web, selector: {user.role: web}, port: 80, healthCheck: {expectStatus: "$*"}}]
`), uint8(1))
	for _, force := range structuralSeeds {
		f.Add(recordChoices(force), uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, nMembers uint8) {
		if lbs, err := specs.Parse(data, "fuzz.yaml"); err == nil {
			validateRender(t, lbs[0], nMembers)
		}
		validateRender(t, genLoadBalancer(&chooser{data: data}), nMembers)
	})
}

// structuralSeeds force some decisions of the generator (by field label and
// option index); every other decision takes its first option.
var structuralSeeds = []map[string]int{
	{},
	{"expectStatus": 2},                      // `$*`
	{"expectStatus": 6, "host": 6, "sni": 6}, // "(?i)2", KELVIN SIGN
	{"backendTLS": 1, "verify": 2, "sni": 0}, // verify required, no name
	{"highAvailability": 1},                  // a pair (the renderer ignores it)
	{"backendTLS": 1, "verifyHost": 1},       // verify required, verifyHost
	{"slowStart": 1, "drainTimeout": 1},      // explicit zeros
	{"pools": 2, "mode": 1, "servers": 2},    // static pools
	{"tls": 1, "redirectHTTP": 1, "routes": 3, "pathPrefix": 1, "balance": 2, "sticky": 1},
}

// validateRender defaults and validates lb and, when it is valid, renders
// it with members and has the real haproxy -c check the result.
func validateRender(t *testing.T, lb *specs.LoadBalancer, nMembers uint8) {
	t.Helper()
	specs.SetDefaults(lb)
	if len(specs.Validate(lb)) > 0 {
		return
	}
	members := map[string][]haproxy.Member{}
	for _, p := range lb.Spec.Pools {
		for i := 0; i < int(nMembers%40); i++ {
			addr := fmt.Sprintf("10.0.%d.%d", i/250, 1+i%250)
			if p.Family == specs.FamilyIPv6 {
				addr = fmt.Sprintf("fd42:77::%x", 1+i)
			}
			members[p.Name] = append(members[p.Name], haproxy.Member{Name: fmt.Sprintf("m-%d", i), Address: addr})
		}
	}
	layout := haproxy.Assign(lb, members, nil)
	cfg := haproxy.Render(lb, layout, haproxy.Options{})
	if string(cfg) != string(haproxy.Render(lb, layout, haproxy.Options{})) {
		t.Fatal("render is not deterministic")
	}
	haproxyCheck(t, cfg, lb.Metadata.Name)
}

// chooser turns fuzz input into decisions: each decision reads one byte
// and takes that option (modulo their number). Past the end of the input
// every decision takes option 0, which is always a valid value, so a short
// input makes a valid spec. With record set, it reads nothing: it takes the
// option force names for the decision's label (else 0) and appends the
// byte that makes the same choice, so that a seed can be written by name.
type chooser struct {
	data   []byte
	force  map[string]int
	record *[]byte
	labels map[string]bool // every label decided on, for the coverage test
}

func (c *chooser) n(label string, k int) int {
	if c.labels != nil {
		c.labels[label] = true
	}
	if c.record != nil {
		i := c.force[label] % k
		*c.record = append(*c.record, byte(i))
		return i
	}
	if len(c.data) == 0 {
		return 0
	}
	b := c.data[0]
	c.data = c.data[1:]
	return int(b) % k
}

func pick[T any](c *chooser, label string, options ...T) T { return options[c.n(label, len(options))] }

func recordChoices(force map[string]int) []byte {
	var out []byte
	genLoadBalancer(&chooser{force: force, record: &out})
	return out
}

// Dictionaries: the first entry of each is valid (or unset); the others mix
// valid values with ones validation must refuse.
var (
	hosts = []string{"", "api.example.org", "API.Example.ORG", "10.0.0.1", "localhost", "a",
		"\u212Aelvin.example.org", "a b", "a#b", "x.org hdr X-Evil 1", "a\nbackend evil", "${HOME}", "-a.org",
		"a..b", strings.Repeat("a.", 126) + "a", "ex\u0430mple.org", "a.example.org.", "xn--caf-dma.example"}
	paths    = []string{"", "/api/", "/", "api", "/a b", "/#x", "/%41", `/a"b`, "/~user/v1", "/x?y", "/" + strings.Repeat("a", 1100)}
	statuses = []string{"", "^(200|204)$", "$*", "^[23]", "^2[0-9]{2}$", "^[23", "(?i)2", "2+", "2{1,3}",
		"^(2.?|3[0-9]{1,2})$", `\d`, "2{4}", "[^2]", "^2*$", "^(20[0-4]|30[12]|2.?){1,2}$", "((2))", "2|3"}
	cookies   = []string{"SRV", "", "a b", "x;y", strings.Repeat("c", 65), "S-1_x", "a=b"}
	balances  = []string{"", "roundrobin", "leastconn", "uri", "random", "source", "URI"}
	ports     = []int{0, 8080, 80, 443, 9100, 1, 65535, 65536, -1, 8443}
	slotsDict = []int{0, 2, 1, 16, 1000, 1001, -1}
	counts    = []int{3, 1, 0, 100, 101, -1}
	durations = []specs.Duration{{}, specs.Dur(0), specs.Dur(time.Millisecond), specs.Dur(100 * time.Millisecond),
		specs.Dur(1500 * time.Millisecond), specs.Dur(5 * time.Second), specs.Dur(90 * time.Second), specs.Dur(time.Hour),
		specs.Dur(24 * time.Hour), specs.Dur(25 * time.Hour), specs.Dur(-time.Second), specs.Dur(1500 * time.Microsecond),
		{Duration: 0}, {Duration: 3 * time.Second}}
	poolNames = []string{"api", "web", "p-1.x", "main", "stats", "", "9x", "a b", "x#", strings.Repeat("p", 64), "default"}
	addresses = []string{"10.0.0.1:80", "srv.example.org:3000", "10.0.0.1", "[::1]:80", "[2001:db8::1]:8080", "2001:db8::1:80", "[fe80::1]:80", "\u212A.org:80", "a:0",
		"a:65536", "host:08", "10.0.0.1:80 backup", "127.0.0.1:1"}
	verifies = []string{"none", "", "required", "maybe"}
	names    = []string{"edge", "", "Edge_1", "a-b", strings.Repeat("e", 64), "fuzz", "a#b"}
	incus    = []string{"", "default", "web-prod", "a b", "-x", strings.Repeat("p", 64)}
	images   = []string{"", "lb-haproxy", "images:debian/12", "images:debian 12", ":x", "a:b:c"}
	keys     = []string{"user.role", "user.tier", "", "a b", "user.x#", strings.Repeat("k", 129)}
	values   = []string{"api", "gold", "", "x y", "-a", "a.b_c-d"}
	nics     = []string{"", "eth0", "eth1", "a-very-long-nic-name", "e#0"}
	certs    = []string{"/etc/incuslb/x.pem", "", "certs/x.pem"}
)

// genLoadBalancer builds a LoadBalancer decision by decision, setting every
// field of the spec types (TestGeneratorCoversEveryField keeps it so).
func genLoadBalancer(c *chooser) *specs.LoadBalancer {
	lb := &specs.LoadBalancer{
		APIVersion: pick(c, "apiVersion", specs.APIVersion, "v1", ""),
		Kind:       pick(c, "kind", specs.Kind, "Service"),
		Metadata: specs.ObjectMeta{
			Name:        pick(c, "name", names...),
			Labels:      pick(c, "labels", map[string]string(nil), map[string]string{"team": "a b"}),
			Annotations: pick(c, "annotations", map[string]string(nil), map[string]string{"note": "#x\n"}),
		},
	}
	s := &lb.Spec
	s.Instance = specs.InstanceSpec{
		Name:     pick(c, "name", names...),
		Project:  pick(c, "project", incus...),
		Image:    pick(c, "image", images...),
		Profiles: pick(c, "profiles", []string(nil), []string{"default", "web"}, []string{"a b"}),
		Adopt:    pick(c, "adopt", false, true),
	}
	if pick(c, "highAvailability", false, true) {
		s.HighAvailability = &specs.HighAvailabilitySpec{
			Replicas:  pick(c, "replicas", 2, 0, 9),
			VirtualIP: pick(c, "virtualIP", "10.77.0.250/24", "10.77.0.250", "::1/64", "10.77.0.0/24", "1.2.3.4/24\n"),
			NIC:       pick(c, "nic", "", "eth0", "eth 0"),
			VRRP: specs.VRRPSpec{RouterID: pick(c, "routerID", 0, 51, 256),
				AdvertInterval: pick(c, "advertInterval", durations...)},
		}
	}
	s.Frontend = specs.FrontendSpec{HTTPPort: pick(c, "httpPort", ports...), HTTPSPort: pick(c, "httpsPort", ports...),
		IPv6: pick(c, "ipv6", false, true)}
	if pick(c, "tls", false, true) {
		s.Frontend.TLS = &specs.TLSSpec{CertificateFile: pick(c, "certificateFile", certs...), RedirectHTTP: pick(c, "redirectHTTP", false, true)}
		if pick(c, "certificates", false, true) {
			s.Frontend.TLS.Certificates = []specs.CertificateSource{{File: pick(c, "file", certs...)}}
		}
		if pick(c, "hsts", false, true) {
			s.Frontend.TLS.HSTS = &specs.HSTSSpec{MaxAge: pick(c, "maxAge", durations...),
				IncludeSubDomains: pick(c, "includeSubDomains", false, true), Preload: pick(c, "preload", false, true)}
		}
		if pick(c, "acme", false, true) {
			a := &specs.ACMESpec{
				Directory:  pick(c, "directory", "", "https://127.0.0.1:14000/dir", "http://ca.example/dir", "https://"),
				Production: pick(c, "production", false, true),
				Email:      pick(c, "email", "", "ops@example.org", "Ops <ops@example.org>"),
				CABundle:   pick(c, "caBundle", "", "/etc/incuslb/ca.pem"),
				Hosts: pick(c, "hosts", specs.ACMEHosts{List: []string{"a.example.org"}}, specs.ACMEHosts{FromRoutes: true},
					specs.ACMEHosts{}, specs.ACMEHosts{List: []string{"*.example.org", "a.example.org", "A.example.org"}},
					specs.ACMEHosts{List: []string{"localhost", "10.0.0.1", "a b"}}),
				Challenge: pick(c, "challenge", "", "http-01", "dns-01"),
				KeyType:   pick(c, "keyType", "", "ec384", "ed25519"),
			}
			if pick(c, "dnsUpdate", false, true) {
				a.DNSUpdate = &specs.DNSUpdateSpec{Nameserver: pick(c, "nameserver", "127.0.0.1:8054", "", "ns.example.org:0"),
					TSIGKeyFile: pick(c, "tsigKeyFile", "/etc/incuslb/tsig.key", ""), Zone: pick(c, "zone", "", "example.org", "a b")}
			}
			if pick(c, "eab", false, true) {
				a.EAB = &specs.ACMEEAB{KID: pick(c, "kid", "kid-1", ""), HMACKeyFile: pick(c, "hmacKeyFile", "/etc/incuslb/eab", "")}
			}
			s.Frontend.TLS.ACME = a
		}
	}
	s.Stats.Port = pick(c, "port", ports...)
	s.Defaults = specs.DefaultsSpec{
		HealthCheck:  genCheck(c),
		SlowStart:    pick(c, "slowStart", durations...),
		DrainTimeout: pick(c, "drainTimeout", durations...),
		Timeouts: specs.Timeouts{
			Connect: pick(c, "connect", durations...), Client: pick(c, "client", durations...),
			Server: pick(c, "server", durations...), Tunnel: pick(c, "tunnel", durations...),
		},
		HardStopAfter:   pick(c, "hardStopAfter", durations...),
		CloseSpreadTime: pick(c, "closeSpreadTime", durations...),
		Slots:           pick(c, "slots", slotsDict...),
		Join:            pick(c, "join", "", specs.JoinChecked, specs.JoinImmediate, "eager"),
	}
	for i := 0; i < pick(c, "pools", 1, 2, 3, 0); i++ {
		s.Pools = append(s.Pools, genPool(c, i))
	}
	for i := 0; i < pick(c, "tcp", 0, 1, 2); i++ {
		l := specs.TCPListener{Name: pick(c, "name", "ssh", "db", "bad name"), Port: pick(c, "port", ports...), Pool: "nope"}
		if n := len(s.Pools); n > 0 {
			l.Pool = s.Pools[c.n("pool", n)].Name
		}
		s.TCP = append(s.TCP, l)
	}
	for i := 0; i < pick(c, "routes", 1, 2, 3, 4, 0); i++ {
		r := specs.Route{Host: pick(c, "host", hosts...), PathPrefix: pick(c, "pathPrefix", paths...), Pool: "nope"}
		if n := len(s.Pools); n > 0 {
			r.Pool = s.Pools[c.n("pool", n)].Name
		}
		if pick(c, "rateLimit", false, true) {
			r.RateLimit = genRateLimit(c)
		}
		if pick(c, "headers", false, true) {
			values := []string{"1", "a b", "50% off $HOME", `say "hi"`, "x\r\ny: z", ""}
			names := []string{"X-Canary", "x_y", "X-Forwarded-For", "Bad Name", "Cache-Control"}
			r.Headers.Request = specs.HeaderOps{Set: map[string]string{pick(c, "set", names...): pick(c, "value", values...)},
				Del: []string{pick(c, "del", names...)}}
			r.Headers.Response = specs.HeaderOps{Set: map[string]string{pick(c, "response", names...): pick(c, "value", values...)}}
			_ = pick(c, "request", 0)
		}
		s.Routes = append(s.Routes, r)
	}
	return lb
}

func genCheck(c *chooser) specs.HealthCheck {
	return specs.HealthCheck{
		Interval:     pick(c, "interval", durations...),
		Fall:         pick(c, "fall", counts...),
		Rise:         pick(c, "rise", counts...),
		FastInterval: pick(c, "fastInterval", durations...),
		DownInterval: pick(c, "downInterval", durations...),
		Timeout:      pick(c, "timeout", durations...),
		Path:         pick(c, "path", paths...),
		Host:         pick(c, "host", hosts...),
		ExpectStatus: pick(c, "expectStatus", statuses...),
	}
}

func genPool(c *chooser, i int) specs.Pool {
	p := specs.Pool{Name: pick(c, "name", poolNames...)}
	if i > 0 && p.Name == poolNames[0] {
		p.Name = fmt.Sprintf("%s%d", p.Name, i) // distinct unless the input says otherwise
	}
	if pick(c, "poolRateLimit", false, true) {
		p.RateLimit = genRateLimit(c)
	}
	p.Mode = pick(c, "poolMode", "", "http", "tcp", "udp")
	if pick(c, "tcpCheck", false, true) {
		p.TCPCheck = &specs.TCPCheck{Send: pick(c, "send", "", "PING", `a"b`, "$x"), Expect: pick(c, "expect", "SSH-2.0", "", "+PONG")}
	}
	p.ProxyProtocol = pick(c, "proxyProtocol", "", "v1", "v2", "v3")
	if pick(c, "canary", false, true) {
		p.Canary = &specs.Canary{Selector: map[string]string{pick(c, "selector.key", keys...): pick(c, "selector.value", values...)},
			Percent: pick(c, "percent", 10, 0, 100, 101, -1)}
	}
	mode := pick(c, "mode", "selector", "servers", "both", "neither")
	if mode == "selector" || mode == "both" {
		p.Selector = map[string]string{}
		for j := 0; j < pick(c, "selector", 1, 2, 0, 3); j++ {
			p.Selector[pick(c, "selector.key", keys...)] = pick(c, "selector.value", values...)
		}
	}
	if mode == "servers" || mode == "both" {
		for j := 0; j < pick(c, "servers", 1, 2, 3, 0); j++ {
			p.Servers = append(p.Servers, specs.Server{
				Name:    pick(c, "server.name", fmt.Sprintf("s%d", j), "", "s0", "a b"),
				Address: pick(c, "address", addresses...),
			})
		}
	}
	p.Project = pick(c, "project", incus...)
	p.NIC = pick(c, "nic", nics...)
	p.Family = pick(c, "family", "", specs.FamilyIPv4, specs.FamilyIPv6, specs.FamilyAny, "inet6")
	p.Port = pick(c, "port", ports...)
	p.Balance = pick(c, "balance", balances...)
	if pick(c, "sticky", false, true) {
		p.Sticky = &specs.Sticky{Cookie: pick(c, "cookie", cookies...)}
	}
	p.HealthCheck = genCheck(c)
	if pick(c, "backendTLS", false, true) {
		p.BackendTLS = &specs.BackendTLS{
			Verify:     pick(c, "verify", verifies...),
			SNI:        pick(c, "sni", hosts...),
			VerifyHost: pick(c, "verifyHost", hosts...),
			// Paths on the controller's host: never in haproxy.cfg.
			ClientCertificateFile: pick(c, "clientCertificateFile", "", "certs/client.pem"),
			CA:                    pick(c, "ca", "", "certs/ca.pem"),
		}
	}
	p.SlowStart = pick(c, "slowStart", durations...)
	p.Slots = pick(c, "slots", slotsDict...)
	p.Join = pick(c, "join", "", specs.JoinChecked, specs.JoinImmediate, "eager")
	return p
}

// TestGeneratorCoversEveryField: every JSON field of the spec types is
// decided by the structural generator, so a field added to the spec and
// not to the generator fails here.
func TestGeneratorCoversEveryField(t *testing.T) {
	fields := map[string]bool{}
	var walk func(reflect.Type)
	walk = func(rt reflect.Type) {
		for rt.Kind() == reflect.Pointer || rt.Kind() == reflect.Slice || rt.Kind() == reflect.Map {
			rt = rt.Elem()
		}
		if rt.Kind() != reflect.Struct || rt == reflect.TypeOf(specs.Duration{}) {
			return
		}
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = true
			walk(f.Type)
		}
	}
	walk(reflect.TypeOf(specs.LoadBalancer{}))
	seen := map[string]bool{}
	for _, force := range append(structuralSeeds, map[string]int{"pools": 2, "mode": 2, "tls": 1, "certificates": 1, "acme": 1, "eab": 1, "dnsUpdate": 1, "hsts": 1, "headers": 1, "rateLimit": 1, "tcpCheck": 1, "tcp": 1, "backendTLS": 1, "sticky": 1, "highAvailability": 1, "canary": 1}) {
		var out []byte
		genLoadBalancer(&chooser{force: force, record: &out, labels: seen})
	}
	// Fields decided under another label.
	for label := range seen {
		seen[strings.SplitN(label, ".", 2)[0]] = true
	}
	seen["spec"], seen["metadata"], seen["instance"], seen["frontend"], seen["stats"], seen["defaults"],
		seen["timeouts"], seen["healthCheck"], seen["vrrp"] = true, true, true, true, true, true, true, true, true
	var missing []string
	for name := range fields {
		if !seen[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("the structural generator never decides %v", missing)
	}
}

func genRateLimit(c *chooser) *specs.RateLimit {
	return &specs.RateLimit{
		Requests: pick(c, "requests", 20, 0, 1_000_001),
		Per:      pick(c, "per", specs.Dur(10*time.Second), specs.Dur(0), specs.Dur(1500*time.Millisecond), specs.Dur(48*time.Hour)),
		By:       pick(c, "by", "", "source", "header:Authorization", "cookie:SID", "header:", "query:x"),
		Burst:    pick(c, "burst", 0, 5, -1),
		Allow:    pick(c, "allow", []string(nil), []string{"10.0.0.0/8", "192.0.2.1"}, []string{"::1"}, []string{"nope"}),
	}
}
