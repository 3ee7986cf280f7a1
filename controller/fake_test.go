package controller

import (
	"context"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
)

// fakeIncus is an in-memory Incus with one LB instance running a fake
// HAProxy. exec decides what other commands return.
type fakeIncus struct {
	inst    incus.Instance
	members []incus.Instance
	files   map[string][]byte
	exec    func(argv []string) incus.ExecResult
	ran     []string // commands run, space-joined (runtime API: "runtime SOCKET: PAYLOAD")
	hap     fakeHAProxy
	writes  int // UpdateConfig calls
	temps   int
}

func newFake() *fakeIncus {
	return &fakeIncus{
		inst: incus.Instance{Name: "lb", Project: "default", Status: "Running", Config: map[string]string{KeyLB: "edge"},
			Addresses: map[string][]string{"eth0": {"10.0.0.2"}}},
		files: map[string][]byte{"/etc/passwd": []byte("root:x:0:0::/root:/bin/sh\nhaproxy:x:100:101::/var/lib/haproxy:/usr/sbin/nologin\n")},
		exec:  func([]string) incus.ExecResult { return incus.ExecResult{} },
		hap:   fakeHAProxy{running: true, loaded: []byte("# Debian's default haproxy.cfg\n")},
	}
}

func (f *fakeIncus) GetInstance(_ context.Context, _, name string, state bool) (*incus.Instance, error) {
	var i incus.Instance
	switch {
	case name == f.inst.Name && f.inst.Status != "":
		i = f.inst
	default:
		found := false
		for _, m := range f.members {
			if m.Name == name {
				i, found = m, true
			}
		}
		if !found {
			return nil, fmt.Errorf("%w: %s", incus.ErrNotFound, name)
		}
	}
	i.Config = copyMap(i.Config)
	if !state {
		i.Addresses, i.Addresses6 = nil, nil
	}
	return &i, nil
}

func copyMap(m map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (f *fakeIncus) ClusterMembers(context.Context) ([]incus.Member, error) { return nil, nil }

func (f *fakeIncus) CreateInstance(_ context.Context, _, name, _ string, _ []string, config map[string]string, _ string) error {
	f.ran = append(f.ran, "create "+name)
	f.inst = incus.Instance{Name: name, Project: "default", Status: "Running", Config: copyMap(config),
		Addresses: map[string][]string{"eth0": {"10.0.0.2"}}}
	f.hap = fakeHAProxy{running: true, loaded: []byte("# Debian's default haproxy.cfg\n")}
	return nil
}
func (f *fakeIncus) SetState(_ context.Context, _, name, action string, _ bool) error {
	f.ran = append(f.ran, action+" "+name)
	if action == "start" {
		f.inst.Status = "Running"
	}
	return nil
}
func (f *fakeIncus) DeleteInstance(_ context.Context, _, name string) error {
	f.ran = append(f.ran, "delete "+name)
	f.inst.Status = ""
	return nil
}
func (f *fakeIncus) UpdateConfig(_ context.Context, _, _ string, keys map[string]string) error {
	f.writes++
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
func (f *fakeIncus) RemoveDevice(context.Context, string, string, string) error { return nil }
func (f *fakeIncus) ListInstances(_ context.Context, _ string, state bool) ([]incus.Instance, error) {
	out := append([]incus.Instance(nil), f.members...)
	if !state {
		for i := range out {
			out[i].Addresses, out[i].Addresses6 = nil, nil
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
	f.temps++
	tmp := path.Join(path.Dir(file), fmt.Sprintf(".%s.incuslb-%d", path.Base(file), f.temps))
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
	switch {
	case argv[0] == "perl" && argv[2] == forgetNeighboursScript:
		f.ran = append(f.ran, "forget neighbours "+strings.Join(argv[3:], " "))
		return incus.ExecResult{Stdout: []byte("0\n")}, nil
	case argv[0] == "perl": // the runtime API through exec
		payload := strings.TrimSpace(string(stdin))
		f.ran = append(f.ran, "runtime "+argv[3]+": "+payload)
		if !f.hap.running {
			return incus.ExecResult{Code: 2, Stderr: []byte("connect: No such file or directory")}, nil
		}
		return incus.ExecResult{Stdout: []byte(f.hap.answer(argv[3], payload, f.files))}, nil
	case argv[0] == "sh" && strings.Contains(argv[2], "rm -f"):
		f.ran = append(f.ran, "sweep")
		for name := range f.files {
			if strings.Contains(name, ".incuslb-") {
				delete(f.files, name)
			}
		}
		return incus.ExecResult{}, nil
	}
	f.ran = append(f.ran, strings.Join(argv, " "))
	res := f.exec(argv)
	if res.Code == 0 && argv[0] == "sh" && argv[2] == startScript {
		f.hap.running = true
		f.hap.load(f.files)
	}
	return res, nil
}
func (f *fakeIncus) Local() bool                              { return false }
func (f *fakeIncus) LocalMember(context.Context, string) bool { return true }

func (f *fakeIncus) reloaded() bool {
	for _, c := range f.ran {
		if strings.HasSuffix(c, ": reload") {
			return true
		}
	}
	return false
}

func (f *fakeIncus) tempsLeft() []string {
	var out []string
	for name := range f.files {
		if strings.Contains(name, ".incuslb-") {
			out = append(out, name)
		}
	}
	return out
}

// fakeHAProxy answers the runtime API and the master CLI about the config
// it loaded, as HAProxy would.
type fakeHAProxy struct {
	running         bool
	loaded          []byte // the config the current worker runs
	servers         map[string]*fakeServer
	reloads, failed int
	failReloads     int               // how many of the next reloads fail
	certs           map[string]string // path -> SHA1 served under it
	crtList         []string          // the crt-list's paths
	sessions        map[string]int
}

type fakeServer struct {
	addr         string
	port, admin  int
	weight       int
	op, health   int
	backend, srv string
}

// load makes the worker run the files on disk.
func (h *fakeHAProxy) load(files map[string][]byte) {
	h.failed, h.loaded, h.servers = 0, files[haproxy.ConfigPath], nil
	h.certs, h.crtList = map[string]string{}, nil
	if strings.Contains(string(h.loaded), " crt-list ") {
		h.crtList = haproxy.ParseCrtList(string(files["/etc/haproxy/certs/edge.crt-list"]))
		for _, path := range h.crtList {
			h.certs[path] = certSHA1(files[path])
		}
	}
}

func (h *fakeHAProxy) table() map[string]*fakeServer {
	if h.servers != nil {
		return h.servers
	}
	h.servers = map[string]*fakeServer{}
	for pool, slots := range haproxy.ParseLayout(h.loaded, nil) {
		for i, sl := range slots {
			// Like HAProxy, a new worker starts every server at health = rise.
			s := &fakeServer{backend: pool, srv: haproxy.SlotName(i), addr: sl.Address, port: sl.Port, op: 2, health: 2, weight: 1}
			if sl.Parked() {
				s.addr, s.port, s.admin, s.op = haproxy.ParkedAddress, haproxy.ParkedPort, 0x04|0x01, 0
			}
			h.servers[pool+"/"+s.srv] = s
		}
	}
	return h.servers
}

func (h *fakeHAProxy) answer(sock, payload string, files map[string][]byte) string {
	cmd := strings.TrimSuffix(payload, ";quit")
	switch {
	case cmd == "show proc":
		failed := ""
		if h.failed > 0 {
			failed = fmt.Sprintf(" [failed: %d]", h.failed)
		}
		return fmt.Sprintf("#<PID>          <type>          <reloads>       <uptime>        <version>\n1               master          %d%s    0d00h00m01s     2.6.12\n# workers\n%d               worker          0               0d00h00m01s     2.6.12\n", h.reloads, failed, 100+h.reloads)
	case cmd == "reload":
		h.reloads++
		if h.failReloads > 0 {
			h.failReloads--
			h.failed++
			return ""
		}
		h.load(files)
		return ""
	case cmd == "show startup-logs":
		return "[ALERT]    (1) : Starting frontend main: cannot bind socket (Address already in use) [0.0.0.0:8404]\n"
	case cmd == "show env "+haproxy.HashVar:
		if v := haproxy.ClaimedHash(h.loaded); v != "" {
			return haproxy.HashVar + "=" + v + "\n"
		}
		return "Variable not found\n"
	case cmd == "show servers state":
		var b strings.Builder
		b.WriteString("1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_port srv_check_health srv_uweight\n")
		t := h.table()
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s := t[k]
			fmt.Fprintf(&b, "1 %s 1 %s %s %d %d %d %d %d\n", s.backend, s.srv, s.addr, s.op, s.admin, s.port, s.health, s.weight)
		}
		return b.String()
	case cmd == "show stat -1 4 -1":
		var b strings.Builder
		b.WriteString("# pxname,svname,qcur,qmax,scur,status\n")
		for k, s := range h.table() {
			fmt.Fprintf(&b, "%s,%s,0,0,%d,UP\n", s.backend, s.srv, h.sessions[k])
		}
		return b.String()
	case strings.HasPrefix(cmd, "show ssl crt-list "):
		if h.crtList == nil {
			return "didn't find the specified filename\n"
		}
		return "# " + strings.TrimPrefix(cmd, "show ssl crt-list ") + "\n" + string(haproxy.CrtList(h.crtList))
	case strings.HasPrefix(cmd, "show ssl cert "):
		sum, ok := h.certs[strings.TrimPrefix(cmd, "show ssl cert ")]
		if !ok {
			return "Can't display the certificate: Not found or the certificate is a bundle!\n"
		}
		return "Filename: " + strings.TrimPrefix(cmd, "show ssl cert ") + "\nStatus: Used\nSHA1 FingerPrint: " + sum + "\n"
	case strings.HasPrefix(cmd, "new ssl cert "):
		h.certs[strings.TrimPrefix(cmd, "new ssl cert ")] = ""
		return "New empty certificate store 'x'!\n"
	case strings.HasPrefix(cmd, "set ssl cert "):
		path, body, _ := strings.Cut(strings.TrimPrefix(cmd, "set ssl cert "), " <<\n")
		if _, ok := h.certs[path]; !ok {
			return "Can't replace a certificate which is not referenced by the configuration!\n"
		}
		h.certs[path] = certSHA1([]byte(body))
		return "Transaction created for certificate x!\n"
	case strings.HasPrefix(cmd, "commit ssl cert "):
		return "Committing x.\nSuccess!\n"
	case strings.HasPrefix(cmd, "add ssl crt-list "):
		f := strings.Fields(strings.TrimPrefix(cmd, "add ssl crt-list "))
		h.crtList = append(h.crtList, f[1])
		return "Inserting certificate 'x' in crt-list 'y'.\nSuccess!\n"
	case strings.HasPrefix(cmd, "del ssl crt-list "):
		f := strings.Fields(strings.TrimPrefix(cmd, "del ssl crt-list "))
		h.crtList = slices.DeleteFunc(h.crtList, func(p string) bool { return p == f[1] })
		return "Entry 'x' deleted in crtlist 'y'!\n"
	case strings.HasPrefix(cmd, "del ssl cert "):
		delete(h.certs, strings.TrimPrefix(cmd, "del ssl cert "))
		return "Certificate 'x' deleted!\n"
	case strings.HasPrefix(cmd, "set server "):
		var out strings.Builder
		for _, one := range strings.Split(cmd, ";") { // as HAProxy's CLI splits
			out.WriteString(h.setServer(strings.TrimSpace(one)))
		}
		return out.String()
	}
	return "Unknown command: " + cmd + "\n"
}

// setServer is one `set server` command: the admin state, health and
// address changes incuslb makes, as HAProxy makes them.
func (h *fakeHAProxy) setServer(cmd string) string {
	f := strings.Fields(cmd)
	s := h.table()[f[2]]
	if s == nil {
		return "No such server.\n"
	}
	switch f[3] {
	case "state":
		switch {
		case f[4] == "maint":
			s.op = 0
		case s.admin&0x01 != 0: // leaving maintenance: healthy at once
			s.health, s.op = 2, 2
		}
		s.admin = map[string]int{"ready": 0, "drain": 0x08, "maint": 0x01}[f[4]] | s.admin&0x04
	case "health":
		switch f[4] {
		case "down":
			s.health, s.op = 0, 0
		case "up":
			s.health, s.op = 4, 2 // rise + fall - 1
		}
	case "weight":
		fmt.Sscanf(f[4], "%d", &s.weight)
		return ""
	case "addr":
		s.addr = f[4]
		fmt.Sscanf(f[6], "%d", &s.port)
		return "IP changed from 'x' to 'y', port changed from 'a' to 'b' by 'stats socket command'\n"
	}
	return "\n"
}
