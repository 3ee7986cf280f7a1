package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

func testLB(t *testing.T, withTLS bool) *specs.LoadBalancer {
	t.Helper()
	lb := &specs.LoadBalancer{APIVersion: specs.APIVersion, Kind: specs.Kind,
		Metadata: specs.ObjectMeta{Name: "edge"},
		Spec: specs.LoadBalancerSpec{
			Instance: specs.InstanceSpec{Name: "lb"},
			Routes:   []specs.Route{{Pool: "api"}},
			Pools:    []specs.Pool{{Name: "api", Selector: map[string]string{"user.role": "api"}, Port: 8080}},
		}}
	if withTLS {
		lb.Spec.Frontend.TLS = &specs.TLSSpec{CertificateFile: testcert.Write(t.TempDir(), "edge.pem", "edge.test")}
	}
	specs.SetDefaults(lb)
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Fatal(errs)
	}
	return lb
}

func member(name, addr string) incus.Instance {
	return incus.Instance{Name: name, Project: "default", Status: "Running", Config: map[string]string{"user.role": "api"},
		Addresses: map[string][]string{"eth0": {addr}}}
}

func apply(t *testing.T, a *Applier, lb *specs.LoadBalancer) *Plan {
	t.Helper()
	p, err := a.Apply(context.Background(), lb, false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ready(f *fakeIncus) string {
	st := StatusFromConfig(f.inst.Config)
	c := st.Condition(ConditionReady)
	if c == nil {
		return "none"
	}
	return c.Status
}

func TestApplyConvergesThenIsANoOp(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{member("api-1", "10.0.0.11")}
	f.files["/etc/haproxy/.haproxy.cfg.incuslb-left-by-a-crash"] = []byte("old")
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, true)
	plan := apply(t, a, lb)
	if !plan.PushCert || plan.ConfigDiff == "" || plan.Reload != ReloadFirstConfig || !f.reloaded() {
		t.Fatalf("first pass: %+v, ran %v", plan, f.ran)
	}
	if !strings.Contains(string(f.hap.loaded), "server srv1 10.0.0.11:8080 check # api-1") {
		t.Fatalf("HAProxy did not load the member:\n%s", f.hap.loaded)
	}
	st := StatusFromConfig(f.inst.Config)
	if st.Generation != 1 || ready(f) != "True" || st.Condition(ConditionProgressing).Status != "False" {
		t.Fatalf("status %+v", st)
	}
	if left := f.tempsLeft(); len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}

	f.ran = nil
	writes := f.writes
	plan = apply(t, a, lb)
	if plan.Changed() || f.reloaded() || f.writes != writes {
		t.Fatalf("second pass changed something: %+v, ran %v", plan, f.ran)
	}
}

func TestApplyLeavesEverythingWhenHAProxyRejectsTheConfig(t *testing.T) {
	f := newFake()
	oldCert := []byte("old cert")
	f.files["/etc/haproxy/certs/edge.pem"] = oldCert
	f.exec = func(argv []string) incus.ExecResult {
		if argv[0] == "haproxy" {
			return incus.ExecResult{Code: 1, Stderr: []byte("[ALERT]    (1) : config : parsing [" + argv[3] + ":43] : 'bind :443' : unable to load SSL certificate\n")}
		}
		return incus.ExecResult{}
	}
	a := &Applier{Incus: f, Log: logr.Discard()}
	_, err := a.Apply(context.Background(), testLB(t, true), false)
	if err == nil || !strings.Contains(err.Error(), "HAProxy rejects the new config") || !strings.Contains(err.Error(), "unable to load SSL certificate") {
		t.Fatalf("err = %v", err)
	}
	if f.files[haproxy.ConfigPath] != nil || string(f.files["/etc/haproxy/certs/edge.pem"]) != string(oldCert) || f.reloaded() {
		t.Fatal("a rejected change replaced a file or reloaded")
	}
	if left := f.tempsLeft(); len(left) > 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
	st := StatusFromConfig(f.inst.Config)
	if c := st.Condition(ConditionDegraded); c == nil || c.Status != "True" || !strings.Contains(c.Message, "rejects") || ready(f) != "False" {
		t.Fatalf("Degraded not recorded: %+v", st)
	}
	if strings.Contains(fmt.Sprint(f.inst.Config), "PRIVATE KEY") {
		t.Fatal("key material in the status")
	}
	f.exec = func([]string) incus.ExecResult { return incus.ExecResult{} }
	apply(t, a, testLB(t, true))
	if st := StatusFromConfig(f.inst.Config); st.Condition(ConditionDegraded).Status != "False" || ready(f) != "True" {
		c := st.Condition(ConditionDegraded)
		t.Fatalf("Degraded stayed %+v", c)
	}
}

// A reload HAProxy fails (a port taken, say) is reported with HAProxy's
// words; the file it loaded is put back; the next pass converges.
func TestAFailedReloadIsReportedAndRetried(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{member("api-1", "10.0.0.11")}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	apply(t, a, lb)
	good := f.files[haproxy.ConfigPath]

	lb.Spec.Stats.Port = 8404 // a structural change
	f.hap.failReloads = 1
	_, err := a.Apply(context.Background(), lb, false)
	if err == nil || !strings.Contains(err.Error(), "failed to load the new config") || !strings.Contains(err.Error(), "Address already in use") ||
		!strings.Contains(err.Error(), "were put back") {
		t.Fatalf("err = %v", err)
	}
	if string(f.files[haproxy.ConfigPath]) != string(good) || string(f.hap.loaded) != string(good) {
		t.Fatal("the file HAProxy runs was not put back")
	}
	if st := StatusFromConfig(f.inst.Config); ready(f) != "False" || st.Condition(ConditionDegraded).Reason != "ReloadFailed" {
		t.Fatalf("status: %+v", StatusFromConfig(f.inst.Config))
	}
	p := apply(t, a, lb)
	if p.Reload != ReloadConfigChanged || ready(f) != "True" || !strings.Contains(string(f.hap.loaded), "127.0.0.1:8404") {
		t.Fatalf("did not converge: %+v", p)
	}
}

// The first config failing to load: nothing of incuslb's ran before, so
// the desired config stays on disk, the message says so, and the next pass
// reloads although the file already holds the desired config.
func TestAFailedFirstReloadDoesNotPretendItPutAnythingBack(t *testing.T) {
	f := newFake()
	f.hap.failReloads = 1
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	_, err := a.Apply(context.Background(), lb, false)
	if err == nil || strings.Contains(err.Error(), "put back") || !strings.Contains(err.Error(), "stays on disk") {
		t.Fatalf("err = %v", err)
	}
	p := apply(t, a, lb)
	if p.Reload != ReloadFirstConfig || ready(f) != "True" {
		t.Fatalf("second pass: %+v", p)
	}
}

// A controller killed between the rename and the reload leaves the desired
// file on disk while HAProxy runs the old config: the next pass reloads,
// and Ready is True only then.
func TestACrashBetweenRenameAndReloadConverges(t *testing.T) {
	f := newFake()
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	apply(t, a, lb)
	lb.Spec.Stats.Port = 8404
	desired := haproxy.Render(lb, haproxy.Layout{}, haproxy.Options{})
	f.files[haproxy.ConfigPath] = desired // what the killed pass renamed into place
	a2 := &Applier{Incus: f, Log: logr.Discard()}
	p := apply(t, a2, lb)
	if p.Reload != ReloadNotLoaded || string(f.hap.loaded) != string(desired) || ready(f) != "True" {
		t.Fatalf("%+v", p)
	}
}

func TestHAProxyNotRunningIsStarted(t *testing.T) {
	f := newFake()
	f.hap.running = false
	a := &Applier{Incus: f, Log: logr.Discard()}
	p := apply(t, a, testLB(t, false))
	if !p.StartHAProxy || p.Reload != ReloadStart || !f.hap.running || ready(f) != "True" {
		t.Fatalf("%+v ran %v", p, f.ran)
	}
}

func TestNeverTouchesAnInstanceItDoesNotOwn(t *testing.T) {
	for _, tc := range []struct{ owner, want string }{
		{"other", `belongs to LoadBalancer "other"`},
		{"", "spec.instance.adopt"},
	} {
		for _, dry := range []bool{false, true} {
			f := newFake()
			f.inst.Config = map[string]string{"user.note": "keep"}
			if tc.owner != "" {
				f.inst.Config[KeyLB] = tc.owner
			}
			f.inst.Status = "Stopped"
			before := fmt.Sprint(f.inst.Config)
			a := &Applier{Incus: f, Log: logr.Discard()}
			_, err := a.Apply(context.Background(), testLB(t, false), dry)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("owner %q dry %v: err = %v", tc.owner, dry, err)
			}
			if fmt.Sprint(f.inst.Config) != before || f.writes > 0 || len(f.ran) > 0 || f.inst.Status != "Stopped" {
				t.Fatalf("owner %q dry %v: touched it: config %v ran %v", tc.owner, dry, f.inst.Config, f.ran)
			}
		}
	}
}

func TestAdoptTakesAnUnownedInstance(t *testing.T) {
	f := newFake()
	f.inst.Config = map[string]string{}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	lb.Spec.Instance.Adopt = true
	p := apply(t, a, lb)
	if !p.AdoptInstance || f.inst.Config[KeyLB] != "edge" || ready(f) != "True" {
		t.Fatalf("%+v %v", p, f.inst.Config)
	}
}

type failingList struct{ *fakeIncus }

func (failingList) ListInstances(context.Context, string, bool) ([]incus.Instance, error) {
	return nil, errors.New("project gone")
}

func TestDryRunWritesNothingEvenWhenItFails(t *testing.T) {
	f := newFake()
	a := &Applier{Incus: failingList{f}, Log: logr.Discard()}
	before := fmt.Sprint(f.inst.Config)
	if _, err := a.Apply(context.Background(), testLB(t, true), true); err == nil {
		t.Fatal("expected the discovery error")
	}
	ok := newFake()
	b := &Applier{Incus: ok, Log: logr.Discard()}
	p, err := b.Apply(context.Background(), testLB(t, true), true)
	if err != nil || !p.PushCert || p.ConfigDiff == "" || p.Reload == "" {
		t.Fatalf("plan %+v %v", p, err)
	}
	for _, g := range []*fakeIncus{f, ok} {
		if fmt.Sprint(g.inst.Config) != before || g.writes > 0 || len(g.files) != 1 || g.reloaded() {
			t.Fatalf("dry run wrote: config %v files %d ran %v", g.inst.Config, len(g.files), g.ran)
		}
		for _, c := range g.ran {
			if c != "test -x /usr/sbin/haproxy" && !strings.Contains(c, ": show ") {
				t.Fatalf("dry run ran %q", c)
			}
		}
	}
}

func TestMembershipChangesGoThroughTheRuntimeAPI(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{member("api-1", "10.0.0.11")}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	apply(t, a, lb)
	reloads := f.hap.reloads
	f.members = append(f.members, member("api-2", "10.0.0.12"))
	plan := apply(t, a, lb)
	if plan.Reload != "" || f.hap.reloads != reloads {
		t.Fatalf("a join reloaded: %q", plan.Reload)
	}
	if len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv2 <- api-2 (10.0.0.12:8080)") {
		t.Fatalf("runtime changes: %v", plan.Runtime)
	}
	if !strings.Contains(string(f.files[haproxy.ConfigPath]), "server srv2 10.0.0.12:8080 check # api-2") {
		t.Fatal("the config file was not rewritten to match")
	}
	// A member that loses its label while it runs is drained, not parked.
	f.members[1].Config = map[string]string{}
	f.hap.sessions = map[string]int{"api/srv2": 3}
	if plan = apply(t, a, lb); plan.Reload != "" || len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv2 draining api-2") || plan.RequeueAfter == 0 {
		t.Fatalf("label removed: %+v", plan)
	}
	// A structural reload while it drains: the drain goes into the state
	// file, and so does every slot that keeps its endpoint.
	lb.Spec.Stats.Port = 8404
	if plan = apply(t, a, lb); plan.Reload != ReloadConfigChanged {
		t.Fatalf("reload: %+v", plan)
	}
	if state := string(f.files[haproxy.ServerStateFile]); !strings.Contains(state, " srv2 10.0.0.12 ") || !strings.Contains(state, " srv1 10.0.0.11 ") {
		t.Fatalf("state file:\n%s", state)
	}
	// Its sessions end: the slot is parked, with no reload.
	f.hap.sessions = nil
	f.hap.table()["api/srv2"].admin = 0x08
	if plan = apply(t, a, lb); plan.Reload != "" || len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv2 evicted") {
		t.Fatalf("drained: %+v", plan)
	}
}

// At the start of `incus stop` the member still runs, but its service and
// network are about to go: the stop operation's event drains it at once (no
// new request; those sent finish while its service shuts down), the
// instance-stopped event evicts its slot, and instance-started lets it
// back.
func TestACleanStopDrainsTheMemberAtOnce(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{member("api-1", "10.0.0.11"), member("api-2", "10.0.0.12")}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	apply(t, a, lb)
	a.InstanceEvent(incus.LifecycleEvent{Action: incus.ActionStopping, Project: "default", Name: "api-2"})
	f.hap.sessions = map[string]int{"api/srv2": 1}
	p := apply(t, a, lb)
	if p.Reload != "" || len(p.Runtime) != 1 || !strings.Contains(p.Runtime[0], "srv2 draining api-2") || !p.Converging() {
		t.Fatalf("%+v", p)
	}
	f.members[1].Status = "Stopped"
	a.InstanceEvent(incus.LifecycleEvent{Action: "instance-stopped", Project: "default", Name: "api-2"})
	if p = apply(t, a, lb); len(p.Runtime) != 1 || !strings.Contains(p.Runtime[0], "srv2 evicted") {
		t.Fatalf("%+v", p)
	}
	f.members[1].Status = "Running"
	a.InstanceEvent(incus.LifecycleEvent{Action: "instance-started", Project: "default", Name: "api-2"})
	if p = apply(t, a, lb); len(p.Runtime) != 1 || !strings.Contains(p.Runtime[0], "<- api-2") {
		t.Fatalf("%+v", p)
	}
}

// TestJoinsWaitForTheirChecks: a member that joins a pool with join:
// checked is marked down as it fills its slot (its checks bring it up); with
// join: immediate it is up at once. Parked slots rest at health 0 from the
// start, with no further pass needed.
func TestJoinsWaitForTheirChecks(t *testing.T) {
	for _, c := range []struct {
		join       string
		op, health int
	}{{specs.JoinChecked, 0, 0}, {specs.JoinImmediate, 2, 4}} {
		t.Run(c.join, func(t *testing.T) {
			f := newFake()
			f.members = []incus.Instance{member("api-1", "10.0.0.11")}
			a := &Applier{Incus: f, Log: logr.Discard()}
			lb := testLB(t, false)
			lb.Spec.Pools[0].Join = c.join
			apply(t, a, lb)
			for k, s := range f.hap.table() {
				if s.addr == haproxy.ParkedAddress && (s.health != 0 || s.op != 0 || s.admin&0x09 != 0) {
					t.Errorf("%s is not at rest after the start: %+v", k, *s)
				}
			}
			if p := apply(t, a, lb); p.Changed() {
				t.Fatalf("a second pass changes: %s", p)
			}
			f.members = append(f.members, member("api-2", "10.0.0.12"))
			apply(t, a, lb)
			if !slices.Contains(f.ran, "forget neighbours all") {
				t.Errorf("the LB's neighbour table was not flushed before the first join: %q", f.ran)
			}
			s := f.hap.table()["api/srv2"]
			if s.addr != "10.0.0.12" || s.admin&0x09 != 0 || s.op != c.op || s.health != c.health {
				t.Fatalf("joined slot: %+v, want op %d health %d", *s, c.op, c.health)
			}
			if p := apply(t, a, lb); p.Changed() {
				t.Fatalf("a pass after the join changes: %s", p)
			}
			// It leaves (deleted): its address's entry is forgotten as it
			// goes; the table is flushed only once.
			f.members = f.members[:1]
			apply(t, a, lb)
			if !slices.Contains(f.ran, "forget neighbours 10.0.0.12") {
				t.Errorf("the leaving address's neighbour entry was not forgotten: %q", f.ran)
			}
			f.members = append(f.members, member("api-3", "10.0.0.13"))
			apply(t, a, lb)
			n := 0
			for _, r := range f.ran {
				if r == "forget neighbours all" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("the neighbour table was flushed %d times", n)
			}
		})
	}
}
