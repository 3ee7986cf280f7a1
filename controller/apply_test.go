package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// fakeIncus is an in-memory Incus with one LB instance. exec decides what
// each command returns.
type fakeIncus struct {
	inst    incus.Instance
	members []incus.Instance
	files   map[string][]byte
	exec    func(argv []string) incus.ExecResult
	ran     []string // commands run, space-joined (perl clients: "runtime SOCKET: PAYLOAD")
	reloads int      // what the fake master reports
}

func newFake() *fakeIncus {
	return &fakeIncus{
		inst: incus.Instance{Name: "lb", Project: "default", Status: "Running", Config: map[string]string{},
			Addresses: map[string][]string{"eth0": {"10.0.0.2"}}},
		files: map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/root:/bin/sh\nhaproxy:x:100:101::/var/lib/haproxy:/usr/sbin/nologin\n")},
		exec:  execOK,
	}
}

// execOK answers like a healthy instance: haproxy present and active.
func execOK(argv []string) incus.ExecResult {
	if len(argv) > 1 && argv[0] == "systemctl" && argv[1] == "is-active" {
		return incus.ExecResult{Stdout: []byte("active\n")}
	}
	return incus.ExecResult{}
}

func (f *fakeIncus) GetInstance(_ context.Context, _, name string) (*incus.Instance, error) {
	if name == f.inst.Name {
		i := f.inst
		return &i, nil
	}
	for _, m := range f.members {
		if m.Name == name {
			return &m, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", incus.ErrNotFound, name)
}
func (f *fakeIncus) CreateInstance(context.Context, string, string, string, []string, map[string]string) error {
	return fmt.Errorf("unexpected create")
}
func (f *fakeIncus) SetState(context.Context, string, string, string, bool) error { return nil }
func (f *fakeIncus) DeleteInstance(context.Context, string, string) error         { return nil }
func (f *fakeIncus) UpdateConfig(_ context.Context, _, _ string, keys map[string]string) error {
	for k, v := range keys {
		if v == "" {
			delete(f.inst.Config, k)
		} else {
			f.inst.Config[k] = v
		}
	}
	return nil
}
func (f *fakeIncus) EnsureDevice(context.Context, string, string, string, map[string]string) error {
	return nil
}
func (f *fakeIncus) ListInstances(_ context.Context, _ string, state bool) ([]incus.Instance, error) {
	out := append([]incus.Instance(nil), f.members...)
	if !state {
		for i := range out {
			out[i].Addresses = nil
		}
	}
	return out, nil
}
func (f *fakeIncus) ReadFile(_ context.Context, _, _, file string) ([]byte, error) {
	if b, ok := f.files[file]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%w: %s", incus.ErrNotFound, file)
}
func (f *fakeIncus) WriteFile(_ context.Context, _, _, file string, data []byte, _ incus.FileMode) error {
	f.files[file] = data
	return nil
}
func (f *fakeIncus) WriteTemp(_ context.Context, _, _, file string, data []byte, _ incus.FileMode) (string, error) {
	tmp := fmt.Sprintf("%s.tmp%d", file, len(f.files))
	f.files[tmp] = data
	return tmp, nil
}
func (f *fakeIncus) Rename(_ context.Context, _, _, from, to string) error {
	f.files[to] = f.files[from]
	delete(f.files, from)
	return nil
}
func (f *fakeIncus) Remove(_ context.Context, _, _, file string) error {
	delete(f.files, file)
	return nil
}
func (f *fakeIncus) Mkdir(context.Context, string, string, string, incus.FileMode) error { return nil }
func (f *fakeIncus) Exec(_ context.Context, _, _ string, argv []string, stdin []byte) (incus.ExecResult, error) {
	if argv[0] == "perl" { // the runtime API through exec: answer as HAProxy would
		f.ran = append(f.ran, "runtime "+argv[3]+": "+strings.TrimSpace(string(stdin)))
		switch {
		case strings.HasPrefix(string(stdin), "show proc"):
			return incus.ExecResult{Stdout: []byte(fmt.Sprintf("#<PID> <type> <reloads> <uptime> <version>\n1 master %d [failed: 0] 0d 2.6\n# workers\n2 worker 0 0d 2.6\n", f.reloads))}, nil
		case strings.HasPrefix(string(stdin), "show servers state"):
			// The slots of the config file, as HAProxy loaded them.
			var b strings.Builder
			b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_port\n")
			for pool, slots := range haproxy.ParseLayout(f.files[haproxy.ConfigPath], nil) {
				for i, sl := range slots {
					if sl.Parked() {
						fmt.Fprintf(&b, "1 %s %d %s 127.0.0.1 0 5 1\n", pool, i+1, haproxy.SlotName(i))
					} else {
						fmt.Fprintf(&b, "1 %s %d %s %s 2 0 %d\n", pool, i+1, haproxy.SlotName(i), sl.Address, sl.Port)
					}
				}
			}
			return incus.ExecResult{Stdout: []byte(b.String())}, nil
		}
		return incus.ExecResult{}, nil
	}
	f.ran = append(f.ran, strings.Join(argv, " "))
	res := f.exec(argv)
	if res.Code == 0 && len(argv) > 1 && argv[0] == "systemctl" && argv[1] == "reload-or-restart" {
		f.reloads++
	}
	return res, nil
}
func (f *fakeIncus) Local() bool             { return false }
func (f *fakeIncus) LocalMember(string) bool { return true }

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

func (f *fakeIncus) reloaded() bool {
	for _, c := range f.ran {
		if strings.HasPrefix(c, "systemctl reload") {
			return true
		}
	}
	return false
}

func TestApplyConvergesThenIsANoOp(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{{Name: "api-1", Project: "default", Status: "Running", Config: map[string]string{"user.role": "api"},
		Addresses: map[string][]string{"eth0": {"10.0.0.11"}}}}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, true)
	plan, err := a.Apply(context.Background(), lb, false)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.PushCert || plan.ConfigDiff == "" || plan.Reload == "" || !f.reloaded() {
		t.Fatalf("first pass: %+v, ran %v", plan, f.ran)
	}
	if !strings.Contains(string(f.files[haproxy.ConfigPath]), "server srv1 10.0.0.11:8080 check # api-1") {
		t.Fatalf("config lacks the member:\n%s", f.files[haproxy.ConfigPath])
	}
	st := StatusFromConfig(f.inst.Config)
	if st.Generation != 1 || st.Condition(ConditionReady).Status != "True" || st.Condition(ConditionProgressing).Status != "False" {
		t.Fatalf("status %+v", st)
	}
	for name := range f.files {
		if strings.Contains(name, ".tmp") {
			t.Errorf("temporary file left behind: %s", name)
		}
	}

	f.ran = nil
	before := fmt.Sprint(f.inst.Config)
	plan, err = a.Apply(context.Background(), lb, false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Changed() || f.reloaded() {
		t.Fatalf("second pass changed something: %+v, ran %v", plan, f.ran)
	}
	if fmt.Sprint(f.inst.Config) != before {
		t.Fatal("a no-op pass rewrote the status")
	}
}

func TestApplyLeavesEverythingWhenHAProxyRejectsTheConfig(t *testing.T) {
	f := newFake()
	running := []byte("# the last good config\n")
	oldCert := []byte("old cert")
	f.files[haproxy.ConfigPath] = running
	f.files["/etc/haproxy/certs/edge.pem"] = oldCert
	f.exec = func(argv []string) incus.ExecResult {
		if argv[0] == "haproxy" {
			return incus.ExecResult{Code: 1, Stderr: []byte("[ALERT]    (1) : config : parsing [" + argv[3] + ":43] : 'bind :443' : unable to load SSL certificate\n")}
		}
		return execOK(argv)
	}
	a := &Applier{Incus: f, Log: logr.Discard()}
	_, err := a.Apply(context.Background(), testLB(t, true), false)
	if err == nil || !strings.Contains(err.Error(), "HAProxy rejects the new config") || !strings.Contains(err.Error(), "unable to load SSL certificate") {
		t.Fatalf("err = %v", err)
	}
	if string(f.files[haproxy.ConfigPath]) != string(running) || string(f.files["/etc/haproxy/certs/edge.pem"]) != string(oldCert) {
		t.Fatal("a rejected change replaced a file")
	}
	if f.reloaded() {
		t.Fatal("a rejected change reloaded HAProxy")
	}
	for name := range f.files {
		if strings.Contains(name, ".tmp") {
			t.Errorf("temporary file left behind: %s", name)
		}
	}
	st := StatusFromConfig(f.inst.Config)
	if c := st.Condition(ConditionDegraded); c == nil || c.Status != "True" || !strings.Contains(c.Message, "rejects") {
		t.Fatalf("Degraded not recorded: %+v", st)
	}
	if strings.Contains(fmt.Sprint(f.inst.Config), "PRIVATE KEY") {
		t.Fatal("key material in the status")
	}

	// Once HAProxy accepts again, Degraded goes back to False.
	f.exec = execOK
	if _, err := a.Apply(context.Background(), testLB(t, true), false); err != nil {
		t.Fatal(err)
	}
	st = StatusFromConfig(f.inst.Config)
	if c := st.Condition(ConditionDegraded); c.Status != "False" {
		t.Fatalf("Degraded stayed %+v", c)
	}
	// And fails again: the transition back to True is recorded too.
	f.exec = func(argv []string) incus.ExecResult {
		if argv[0] == "haproxy" {
			return incus.ExecResult{Code: 1}
		}
		return execOK(argv)
	}
	f.files[haproxy.ConfigPath] = running
	_, _ = a.Apply(context.Background(), testLB(t, true), false)
	st = StatusFromConfig(f.inst.Config)
	if c := st.Condition(ConditionDegraded); c.Status != "True" {
		t.Fatalf("Degraded = %+v after a second failure", c)
	}
}

func TestApplyPutsTheOldConfigBackWhenTheReloadFails(t *testing.T) {
	f := newFake()
	running := []byte("# the last good config\n")
	f.files[haproxy.ConfigPath] = running
	f.exec = func(argv []string) incus.ExecResult {
		if argv[0] == "systemctl" && argv[1] == "reload-or-restart" {
			return incus.ExecResult{Code: 1, Stderr: []byte("Job for haproxy.service failed")}
		}
		return execOK(argv)
	}
	a := &Applier{Incus: f, Log: logr.Discard()}
	_, err := a.Apply(context.Background(), testLB(t, false), false)
	if err == nil || !strings.Contains(err.Error(), "previous files were put back") {
		t.Fatalf("err = %v", err)
	}
	if string(f.files[haproxy.ConfigPath]) != string(running) {
		t.Fatal("the old config was not put back")
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	f := newFake()
	a := &Applier{Incus: f, Log: logr.Discard()}
	plan, err := a.Apply(context.Background(), testLB(t, true), true)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.PushCert || plan.ConfigDiff == "" || plan.Reload == "" {
		t.Fatalf("plan %+v", plan)
	}
	if len(f.files) != 1 || len(f.inst.Config) != 0 {
		t.Fatalf("dry run wrote: files %v config %v", len(f.files), f.inst.Config)
	}
	for _, c := range f.ran {
		if c != "test -x /usr/sbin/haproxy" && c != "systemctl is-active haproxy" && !strings.Contains(c, ": show ") {
			t.Fatalf("dry run ran %q", c)
		}
	}
}

func TestMembershipChangesGoThroughTheRuntimeAPI(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{{Name: "api-1", Project: "default", Status: "Running", Config: map[string]string{"user.role": "api"},
		Addresses: map[string][]string{"eth0": {"10.0.0.11"}}}}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	if _, err := a.Apply(context.Background(), lb, false); err != nil {
		t.Fatal(err)
	}
	reloads := f.reloads
	f.members = append(f.members, incus.Instance{Name: "api-2", Project: "default", Status: "Running",
		Config: map[string]string{"user.role": "api"}, Addresses: map[string][]string{"eth0": {"10.0.0.12"}}})
	plan, err := a.Apply(context.Background(), lb, false)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Reload != "" || f.reloads != reloads {
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
	if plan, err = a.Apply(context.Background(), lb, false); err != nil || plan.Reload != "" ||
		len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv2 draining api-2") || plan.RequeueAfter == 0 {
		t.Fatalf("label removed: %v %+v", err, plan)
	}
	f.members[1].Config = map[string]string{"user.role": "api"}
	// A stopped member is parked at once, again with no reload.
	f.members[1].Status = "Stopped"
	if plan, err = a.Apply(context.Background(), lb, false); err != nil || plan.Reload != "" || len(plan.Runtime) != 1 || !strings.Contains(plan.Runtime[0], "srv2 parked") {
		t.Fatalf("stop: %v %+v", err, plan)
	}
}
