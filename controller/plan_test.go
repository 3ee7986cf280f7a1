package controller

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// running is an observation of HAProxy running cfg (from the file cfg),
// every filled slot UP, every parked slot at rest (down, health 0).
func running(cfg []byte) *Observation {
	obs := &Observation{Answers: true, LoadedHash: haproxy.ClaimedHash(cfg), File: cfg, Sessions: map[string]int{}}
	for pool, slots := range haproxy.ParseLayout(cfg, nil) {
		for i, s := range slots {
			st := haproxy.ServerState{Backend: pool, Name: haproxy.SlotName(i), Address: s.Address, Port: s.Port, OpState: 2}
			if s.Parked() {
				st.Address, st.Port, st.AdminState, st.OpState = haproxy.ParkedAddress, haproxy.ParkedPort, 0x04, 0
			}
			obs.Servers = append(obs.Servers, st)
		}
	}
	return obs
}

func disc(members ...incus.Instance) *discovery {
	d := &discovery{members: map[string][]haproxy.Member{}, seen: map[string]incus.Instance{}}
	for _, m := range members {
		d.seen["default/"+m.Name] = m
		if m.Config["user.role"] == "api" && m.Running() {
			d.members["api"] = append(d.members["api"], haproxy.Member{Name: m.Name, Address: m.IPv4("eth0")})
		}
	}
	return d
}

func TestPlan(t *testing.T) {
	lb := testLB(t, false)
	cfgOne := haproxy.Render(lb, haproxy.Assign(lb, map[string][]haproxy.Member{"api": {{Name: "api-1", Address: "10.0.0.11"}}}, nil), haproxy.Options{})
	// evicted: running cfgOne with srv2 evicted (drained at the parked
	// address, not at rest).
	evicted := func() *Observation {
		obs := running(cfgOne)
		for i, s := range obs.Servers {
			if s.Name == "srv2" {
				obs.Servers[i].AdminState = 0x08 | 0x04
			}
		}
		return obs
	}
	cfgTwo := haproxy.Render(lb, haproxy.Assign(lb, map[string][]haproxy.Member{"api": {{Name: "api-1", Address: "10.0.0.11"}, {Name: "api-2", Address: "10.0.0.12"}}}, nil), haproxy.Options{})
	other := *lb
	other.Spec.Stats.Port = 8404
	cfgOther := haproxy.Render(&other, haproxy.Assign(&other, map[string][]haproxy.Member{"api": {{Name: "api-1", Address: "10.0.0.11"}}}, nil), haproxy.Options{})
	api1, api2 := member("api-1", "10.0.0.11"), member("api-2", "10.0.0.12")
	unlabelled := api2
	unlabelled.Config = map[string]string{}
	stopped := api2
	stopped.Status = "Stopped"
	now := time.Unix(1_700_000_000, 0)
	draining := func(sessions int) *Observation {
		o := running(cfgTwo)
		for i := range o.Servers {
			if o.Servers[i].Name == "srv2" {
				o.Servers[i].AdminState = 0x08
			}
		}
		o.Sessions["api/srv2"] = sessions
		return o
	}
	many := make([]incus.Instance, 17)
	for i := range many {
		many[i] = member("api-"+string(rune('a'+i)), "10.0.1."+string(rune('1'+i%9))+string(rune('0'+i/9)))
	}

	for _, tc := range []struct {
		name   string
		obs    *Observation
		disc   *discovery
		drains map[string]time.Time
		force  bool
		want   string // the plan's String(), after its "edge (default/lb):" prefix
	}{
		{"HAProxy not running", &Observation{}, disc(api1), nil, false,
			" start haproxy; config differs; reload start (HAProxy was not running);"},
		{"a config incuslb did not write", &Observation{Answers: true, File: []byte("global\n")}, disc(api1), nil, false,
			" config differs; reload first-config (HAProxy runs a config incuslb did not write);"},
		{"nothing to do", running(cfgOne), disc(api1), nil, false, ""},
		{"a member joins: runtime API", running(cfgOne), disc(api1, api2), nil, false,
			" config differs; join api/srv2 <- api-2 (10.0.0.12:8080);"},
		{"a stopped member is evicted at once", running(cfgTwo), disc(api1, stopped), nil, false,
			" config differs; evict api/srv2 evicted (drained, at the parked address; parked in 5.25s); requeue after 5.25s"},
		{"an evicted slot waits out timeouts.connect", evicted(), disc(api1, stopped),
			map[string]time.Time{"evict/api/1": now.Add(-5 * time.Second)}, false, " requeue after 250ms"},
		{"then it is parked", evicted(), disc(api1, stopped),
			map[string]time.Time{"evict/api/1": now.Add(-6 * time.Second)}, false, " park api/srv2 parked;"},
		{"a controller that restarted parks at once", evicted(), disc(api1, stopped), nil, false, " park api/srv2 parked;"},
		{"a running member that lost its label drains", running(cfgTwo), disc(api1, unlabelled), nil, false,
			" drain api/srv2 draining api-2 (10.0.0.12:8080); requeue after 1s"},
		{"a draining member with sessions keeps draining", draining(2), disc(api1, unlabelled),
			map[string]time.Time{"edge/api/10.0.0.12:8080": now.Add(-time.Second)}, false, " requeue after 1s"},
		{"a draining member with no session is evicted, then parked", draining(0), disc(api1, unlabelled), nil, false,
			" config differs; evict api/srv2 evicted"},
		{"the drain timeout evicts it", draining(5), disc(api1, unlabelled),
			map[string]time.Time{"edge/api/10.0.0.12:8080": now.Add(-31 * time.Second)}, false, " config differs; evict api/srv2 evicted"},
		{"the file holds the desired config but HAProxy runs another", func() *Observation {
			o := running(cfgOther)
			o.File = cfgOne
			return o
		}(), disc(api1), nil, false, " reload not-loaded"},
		{"the structure changed", running(cfgOther), disc(api1), nil, false, " config differs; reload config-changed"},
		{"a pool ran out of slots", running(cfgOne), disc(append(many, api1)...), nil, false, " config differs; reload slots-grew (pool api ran out of slots (16 -> 32));"},
		{"ForceReload makes a join a reload", running(cfgOne), disc(api1, api2), nil, true,
			" config differs; reload forced (membership or certificate changed (reload forced));"},
		{"a member without an address yet", running(cfgOne), func() *discovery { d := disc(api1); d.waiting = 1; return d }(), nil, false,
			" requeue after 100ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Plan{LB: "edge", Instance: "default/lb"}
			plan(planInput{lb: lb, obs: tc.obs, prev: previousLayout(lb, tc.obs), disc: tc.disc, drains: tc.drains, now: now, forceReload: tc.force}, p)
			got := strings.TrimPrefix(p.String(), "edge (default/lb):")
			if !strings.HasPrefix(got, tc.want) || (tc.want == "" && got != "") {
				t.Fatalf("plan:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestPlanCertificate(t *testing.T) {
	lb := testLB(t, true)
	cert, err := specs.LoadCertificate(lb.Spec.Frontend.TLS.CertificateFile)
	if err != nil {
		t.Fatal(err)
	}
	certs := haproxy.CertFiles(lb, haproxy.Options{}, [][]byte{cert})
	path, list := certs[0].Path, haproxy.CrtList(haproxy.CertPaths(certs))
	cfg := haproxy.Render(lb, haproxy.Assign(lb, nil, nil), haproxy.Options{})
	other, _ := specs.LoadCertificate(testcert.Write(t.TempDir(), "x.pem", "other.test"))
	for _, tc := range []struct {
		name                       string
		served, file               []byte
		push, swap, stage, reloads bool
	}{
		{"served and on disk", cert, cert, false, false, false, false},
		{"renewed on the host", other, other, true, true, true, false},
		{"file stale, served right", cert, other, true, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := running(cfg)
			obs.Certs = certObservation{Files: map[string][]byte{path: tc.file}, CrtList: list,
				Loaded: []string{path}, SHA1: map[string]string{path: certSHA1(tc.served)}}
			p := &Plan{}
			plan(planInput{lb: lb, certs: certs, obs: obs, prev: haproxy.Layout{}, disc: disc()}, p)
			swap, stage := len(p.certs.set) > 0, len(p.certs.write) > 0
			if p.PushCert != tc.push || swap != tc.swap || stage != tc.stage || (p.Reload != "") != tc.reloads {
				t.Fatalf("%s: push %v swap %v stage %v reload %q", tc.name, p.PushCert, swap, stage, p.Reload)
			}
		})
	}
}

// planCerts: which certificates change through the runtime API (set, add,
// del) and which files are written, as the list in the spec grows,
// shrinks, changes or is reordered.
func TestPlanCerts(t *testing.T) {
	pem := func(s string) []byte {
		return []byte("-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString([]byte(s)) + "\n-----END CERTIFICATE-----\n")
	}
	files := func(names ...string) []haproxy.CertFile {
		var out []haproxy.CertFile
		for _, n := range names {
			out = append(out, haproxy.CertFile{Path: "/c/" + n[:1], PEM: pem(n)})
		}
		return out
	}
	// observed holds what is on disk and served: each name's first letter
	// is its path, the rest its content.
	observed := func(names ...string) certObservation {
		o := certObservation{Files: map[string][]byte{}, SHA1: map[string]string{}}
		for _, f := range files(names...) {
			o.Files[f.Path], o.SHA1[f.Path] = f.PEM, certSHA1(f.PEM)
			o.Loaded = append(o.Loaded, f.Path)
		}
		o.CrtList = haproxy.CrtList(o.Loaded)
		return o
	}
	paths := func(fs []haproxy.CertFile) string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Path)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name                   string
		want                   []haproxy.CertFile
		obs                    certObservation
		loaded                 bool
		set, add, del, written string
		list                   bool
	}{
		{"in sync", files("a1", "b1"), observed("a1", "b1"), true, "", "", "", "", false},
		{"one renewed", files("a1", "b2"), observed("a1", "b1"), true, "/c/b", "", "", "/c/b", false},
		{"one added", files("a1", "b1", "c1"), observed("a1", "b1"), true, "", "/c/c", "", "/c/c", true},
		{"one removed", files("a1"), observed("a1", "b1"), true, "", "", "/c/b", "", true},
		{"reordered by hand", files("a1", "b1", "c1"), observed("a1", "c1", "b1"), true, "", "/c/b,/c/c", "/c/c,/c/b", "", true},
		{"HAProxy runs no config of ours", files("a1"), certObservation{}, false, "", "", "", "/c/a", true},
		{"no TLS", nil, observed("a1"), true, "", "", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := planCerts(tc.want, tc.obs, tc.loaded)
			dels := strings.Join(c.del, ",")
			if paths(c.set) != tc.set || paths(c.add) != tc.add || dels != tc.del || paths(c.write) != tc.written || (c.crtList != nil) != tc.list {
				t.Fatalf("set %q add %q del %q write %q list %v", paths(c.set), paths(c.add), dels, paths(c.write), c.crtList != nil)
			}
		})
	}
}

// A hand-edited "server srv2000000" (or srv4001) in the container's file
// does not make the controller keep that many slots.
func TestPreviousLayoutIsBoundedBySpec(t *testing.T) {
	lb := testLB(t, false)
	obs := &Observation{File: []byte("backend api\n    server srv4001 10.0.0.9:8080 check # x\n    server srv2000000 10.0.0.8:8080 check # y\n")}
	prev := previousLayout(lb, obs)
	p := &Plan{}
	plan(planInput{lb: lb, obs: obs, prev: prev, disc: disc()}, p)
	if n := len(p.layout["api"]); n != lb.Spec.Pools[0].Slots {
		t.Fatalf("rendered %d slots, want %d", n, lb.Spec.Pools[0].Slots)
	}
}
