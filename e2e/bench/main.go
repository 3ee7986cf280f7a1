// Command bench measures incuslb on real Incus and real HAProxy and prints
// a table (make bench). It measures from the outside: event times come from
// Incus's own event stream, HAProxy's state is polled on the admin socket
// every millisecond, and traffic goes through the load balancer. It works
// in an Incus project of its own and deletes it afterwards; traffic goes
// only to the containers it made, on the Incus bridge.
//
//	(a) Incus event -> runtime change applied (stop -> slot parked; start ->
//	    slot filled, which includes waiting for the DHCP address)
//	(b) instance started -> first request served by it through the LB
//	(c) churn under a fixed-rate open-loop load, half keep-alive and half
//	    new connections: clean stop/start cycles, label flips, hard kills
//	    and structural reloads, one at a time; failed requests by the kind
//	    of event whose window they fell in
//	(e) WebSockets held through the churn; breaks by cause
//	(g) an LB pair behind a virtual address: a client polls it every 10 ms
//	    through hard kills, clean stops and returns of the holder
//	(f) joins, from the moment the controller can know (an address
//	    visible, a label set) to the first request served, split into the
//	    controller's part, the first passing check and the first request;
//	    at a reused address and at a fresh one
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
)

var (
	cycles     = flag.Int("cycles", 20, "start/stop cycles for (a) and (b)")
	joins      = flag.Int("joins", 10, "joins at a reused and at a fresh address for (f)")
	cleanStops = flag.Int("clean-stops", 50, "clean stop/start cycles in the churn (c)")
	labelFlips = flag.Int("label-flips", 50, "label flips (join/leave) in the churn (c)")
	hardKills  = flag.Int("hard-kills", 20, "hard kills in the churn (c)")
	structural = flag.Int("reloads", 10, "structural reloads in the churn (c)")
	sockets    = flag.Int("websockets", 500, "WebSockets held through the churn (e)")
	rate       = flag.Int("rate", 200, "requests per second of the load in (c)")
	failovers  = flag.Int("failovers", 5, "rounds of (g): hard kill, return, clean stop, return of the pair's holder")
	keep       = flag.Bool("keep", false, "keep the project afterwards")
)

const (
	lbName = "bench-lb"
	pool   = "bench_pool"
)

type bench struct {
	project, work, bin, server string
	lbAddr                     string
	rt                         *haproxy.Runtime
	client                     *http.Client
	events                     chan incus.LifecycleEvent
	ic                         *incus.Client
	serverTimeout              string // the spec's, toggled for a structural reload
}

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	b := &bench{events: make(chan incus.LifecycleEvent, 1024)}
	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	b.project = "incuslb-bench-" + hex.EncodeToString(suffix[:])
	var err error
	if b.work, err = os.MkdirTemp("", "incuslb-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(b.work)
	b.bin, b.server = filepath.Join(b.work, "incuslb"), filepath.Join(b.work, "testserver")
	if err := sh("", "go", "build", "-o", b.bin, "./cmd/incuslb"); err != nil {
		return err
	}
	if err := sh("CGO_ENABLED=0", "go", "build", "-o", b.server, "./e2e/testserver"); err != nil {
		return err
	}
	if err := sh("", "incus", "project", "create", b.project, "-c", "features.images=false", "-c", "features.profiles=false"); err != nil {
		return err
	}
	if !*keep {
		defer b.cleanup()
	}
	for _, n := range []string{"bench-a", "bench-b", "bench-c"} {
		if err := b.backend(n, "user.role=bench", ""); err != nil {
			return err
		}
	}
	if err := b.backend("bench-x", "", ""); err != nil {
		return err
	}

	// Events, as Incus reports them, for the timestamps.
	if b.ic, err = incus.Connect(context.Background(), ""); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = b.ic.WatchLifecycle(ctx, nil, func(ev incus.LifecycleEvent) {
			if ev.Project == b.project {
				select {
				case b.events <- ev:
				default:
				}
			}
		})
	}()

	// (a), (b) and (f) measure the controller's and HAProxy's share of a
	// join: no ramp, and one passing check makes a member UP.
	slowStart, rise = "0s", 1
	fmt.Fprintln(os.Stderr, "== (a)+(b): start/stop cycles")
	ctl, err := b.startController(false)
	if err != nil {
		return err
	}
	cyc, err := b.cycles()
	if err != nil {
		ctl.Stop()
		return err
	}
	fmt.Fprintln(os.Stderr, "== (f): joins at a reused and at a fresh address")
	reused, fresh, err := b.joinSeries()
	ctl.Stop()
	if err != nil {
		return err
	}
	slowStart, rise = "1s", 2
	fmt.Fprintln(os.Stderr, "== (c)+(e): churn under load, WebSockets held")
	if ctl, err = b.startController(false); err != nil {
		return err
	}
	ch, err := b.churn()
	ctl.Stop()
	if err != nil {
		return err
	}
	var fo failoverResult
	if *failovers > 0 {
		fmt.Fprintln(os.Stderr, "== (g): failover of an LB pair")
		prefix, err := b.staticPrefix()
		if err != nil {
			return err
		}
		if fo, err = b.failover(*failovers, prefix+".241"); err != nil {
			return err
		}
	}
	report(cyc, reused, fresh, ch)
	reportFailover(fo)
	return nil
}

func (b *bench) cleanup() {
	out, _ := exec.Command("incus", "list", "--project", b.project, "--format", "json").Output()
	var insts []struct{ Name string }
	_ = json.Unmarshal(out, &insts)
	for _, i := range insts {
		_ = exec.Command("incus", "--project", b.project, "delete", "--force", i.Name).Run()
	}
	_ = exec.Command("incus", "project", "delete", b.project).Run()
	_ = exec.Command("incus", "profile", "delete", "--project", "default", b.lease()).Run()
	socks, _ := filepath.Glob("/run/incuslb/" + b.project + "_*.sock")
	for _, s := range socks {
		_ = os.Remove(s)
	}
}

// lease is the leader lease of the harness's controllers: their own.
func (b *bench) lease() string { return "incuslb-lease-" + b.project }

func sh(env string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if env != "" {
		cmd.Env = append(os.Environ(), env)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (b *bench) incus(args ...string) error {
	return sh("", "incus", append([]string{"--project", b.project}, args...)...)
}

// backend launches a container running testserver, labelled with label
// (KEY=VALUE, or "" for none), at a static address unless addr is "", and
// waits until it serves.
func (b *bench) backend(name, label, addr string) error {
	args := []string{"launch", "lb-haproxy", name}
	if label != "" {
		args = append(args, "-c", label)
	}
	if addr != "" {
		args = append(args, "--device", "eth0,ipv4.address="+addr)
	}
	if err := b.incus(args...); err != nil {
		return err
	}
	return testenv.InstallTestserver(b.project, name, b.server, b.work, "/usr/local/bin/testserver")
}

func (b *bench) ipv4(name string) string { return testenv.IPv4(b.project, name) }

const specTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: bench}
spec:
  instance: {name: bench-lb, project: %s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: %d}
    slowStart: %s
    drainTimeout: 5s
    timeouts: {connect: 1s, server: %s}
  routes: [{pool: bench_pool}]
  pools:
    - {name: bench_pool, selector: {user.role: bench}, port: 8080, healthCheck: {path: /health}}
`

// slowStart and rise are the spec's: 0s and 1 for the start/stop cycles
// and the joins, which measure when a started member is first served (a
// ramp would delay it on purpose, and rise 1 makes the first passing check
// the one that counts), 1s and 2 for the churn.
var (
	slowStart = "0s"
	rise      = 1
)

func (b *bench) writeSpec(serverTimeout string) error {
	dir := filepath.Join(b.work, "specs")
	_ = os.MkdirAll(dir, 0o755)
	tmp := filepath.Join(dir, ".bench.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(specTemplate, b.project, rise, slowStart, serverTimeout)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "bench.yaml"))
}

// run starts incuslb with args, its output to logName in the work dir.
func (b *bench) run(logName string, args ...string) (*testenv.Process, error) {
	logf, err := os.Create(filepath.Join(b.work, logName))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := testenv.Start(cmd)
	if err != nil {
		logf.Close()
		return nil, err
	}
	go func() { <-p.Done; logf.Close() }()
	return p, nil
}

// startController runs `incuslb run` and waits until the LB serves.
func (b *bench) startController(forceReload bool) (*testenv.Process, error) {
	b.serverTimeout = "60s"
	if err := b.writeSpec(b.serverTimeout); err != nil {
		return nil, err
	}
	args := []string{"run", "--spec", filepath.Join(b.work, "specs"), "--listen", "", "--resync", "1m", "--lease", b.lease()}
	if forceReload {
		args = append(args, "--force-reload")
	}
	p, err := b.run(fmt.Sprintf("controller-%t.log", forceReload), args...)
	if err != nil {
		return nil, err
	}
	base := "/run/incuslb/" + b.project + "_" + lbName
	b.rt = &haproxy.Runtime{Admin: haproxy.UnixDialer(base + ".admin.sock"), Master: haproxy.UnixDialer(base + ".master.sock")}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if b.lbAddr = b.ipv4(lbName); b.lbAddr != "" {
			b.client = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			if code, _, err := b.get("/"); err == nil && code == 200 {
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, errors.New("the LB never served")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (b *bench) get(path string) (int, string, error) {
	resp, err := b.client.Get("http://" + b.lbAddr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Served-By"), nil
}

// waitEvent returns the time Incus stamped on the next event action for name.
func (b *bench) waitEvent(name, action string) (time.Time, error) {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-b.events:
			if ev.Name == name && ev.Action == action {
				return ev.Time, nil
			}
		case <-timeout:
			return time.Time{}, fmt.Errorf("no %s event for %s", action, name)
		}
	}
}

// waitSlot polls the admin socket every millisecond until a slot of the
// pool holds addr (filled) or none does (parked), and returns when.
func (b *bench) waitSlot(addr string, filled bool) (time.Time, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		states, err := b.rt.ServersState(context.Background(), pool)
		if err == nil {
			found := false
			for _, s := range states {
				if s.Address == addr && s.State() != "MAINT" {
					found = true
				}
			}
			if found == filled {
				return time.Now(), nil
			}
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("slot for %s never became filled=%t", addr, filled)
}

func drain(ch chan incus.LifecycleEvent) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}
