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
//	(c) churn under a fixed-rate load: 100 graceful membership changes and
//	    10 structural reloads, beside the same run with a reload per change
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
	"sync"
	"sync/atomic"
	"time"

	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
)

var (
	cycles  = flag.Int("cycles", 20, "start/stop cycles for (a) and (b)")
	changes = flag.Int("changes", 100, "graceful membership changes for (c)")
	reloads = flag.Int("reloads", 10, "structural reloads for (c)")
	rate    = flag.Int("rate", 200, "requests per second of the load in (c)")
	keep    = flag.Bool("keep", false, "keep the project afterwards")
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
		if err := b.backend(n, "user.role=bench"); err != nil {
			return err
		}
	}
	if err := b.backend("bench-x", ""); err != nil {
		return err
	}

	// Events, as Incus reports them, for the timestamps.
	c, err := incus.Connect(context.Background(), "")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		_ = c.WatchLifecycle(ctx, nil, func(ev incus.LifecycleEvent) {
			if ev.Project == b.project {
				select {
				case b.events <- ev:
				default:
				}
			}
		})
	}()

	fmt.Fprintln(os.Stderr, "== (a)+(b): start/stop cycles")
	ctl, err := b.startController(false)
	if err != nil {
		return err
	}
	stopLat, startLat, servedLat, err := b.cycles()
	ctl.stop()
	if err != nil {
		return err
	}
	slowStart = "1s"
	fmt.Fprintln(os.Stderr, "== (c): churn with the runtime API")
	ctl, err = b.startController(false)
	if err != nil {
		return err
	}
	churnRuntime, err := b.churn()
	ctl.stop()
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "== (c): churn with a reload per change (the seed's way)")
	ctl, err = b.startController(true)
	if err != nil {
		return err
	}
	churnReload, err := b.churn()
	ctl.stop()
	if err != nil {
		return err
	}

	fmt.Printf("| measure | samples | p50 | p99 | max | target |\n|---|---|---|---|---|---|\n")
	row := func(name string, d []time.Duration, target string) {
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", name, len(d), ms(pct(d, 50)), ms(pct(d, 99)), ms(pct(d, 100)), target)
	}
	row("(a) instance-stopped event -> slot parked (runtime API)", stopLat, "p99 < 50 ms")
	row("(a) instance-started event -> slot filled (incl. DHCP wait)", startLat, "-")
	row("(b) instance started -> first request served by it (slowStart 0)", servedLat, "p50 < 1.5 s")
	fmt.Printf("\n| (c) churn at %d rps | requests | failed | p99 latency | worst 1 s window | HAProxy reloads |\n|---|---|---|---|---|---|\n", *rate)
	for _, r := range []struct {
		name string
		c    churnResult
	}{{"runtime API (incuslb)", churnRuntime}, {"reload per change (seed)", churnReload}} {
		fmt.Printf("| %s | %d | %d | %s | %d rps | %d |\n", r.name, r.c.requests, r.c.failed, ms(r.c.p99), r.c.worstWindow, r.c.reloads)
	}
	fmt.Printf("\n(c): %d graceful membership changes (user.incuslb.drain toggled on one of 3 members) and %d structural reloads (a spec timeout toggled).\n", *changes, *reloads)
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
	_ = os.Remove("/run/incuslb/" + b.project + "_" + lbName + ".admin.sock")
	_ = os.Remove("/run/incuslb/" + b.project + "_" + lbName + ".master.sock")
}

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
// (KEY=VALUE, or "" for none), and waits until it serves.
func (b *bench) backend(name, label string) error {
	args := []string{"launch", "lb-haproxy", name}
	if label != "" {
		args = append(args, "-c", label)
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
    healthCheck: {interval: 1s, fall: 3, rise: 2}
    slowStart: %s
    drainTimeout: 5s
    timeouts: {connect: 1s, server: %s}
  routes: [{pool: bench_pool}]
  pools:
    - {name: bench_pool, selector: {user.role: bench}, port: 8080, healthCheck: {path: /health}}
`

// slowStart is the spec's slowstart: 0s for the start/stop cycles, which
// measure when a started member is first served (a ramp would delay it on
// purpose), 1s for the churn.
var slowStart = "0s"

func (b *bench) writeSpec(serverTimeout string) error {
	dir := filepath.Join(b.work, "specs")
	_ = os.MkdirAll(dir, 0o755)
	tmp := filepath.Join(dir, ".bench.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf(specTemplate, b.project, slowStart, serverTimeout)), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "bench.yaml"))
}

type controllerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *controllerProc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// startController runs `incuslb run` and waits until the LB serves.
func (b *bench) startController(forceReload bool) (*controllerProc, error) {
	if err := b.writeSpec("60s"); err != nil {
		return nil, err
	}
	args := []string{"run", "--spec", filepath.Join(b.work, "specs"), "--listen", "", "--resync", "1m"}
	if forceReload {
		args = append(args, "--force-reload")
	}
	logf, err := os.Create(filepath.Join(b.work, fmt.Sprintf("controller-%t.log", forceReload)))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &controllerProc{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
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
			p.stop()
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

func (b *bench) cycles() (stopLat, startLat, servedLat []time.Duration, err error) {
	if err := b.incus("config", "set", "bench-x", "user.role=bench"); err != nil {
		return nil, nil, nil, err
	}
	if err := b.incus("stop", "--force", "bench-x"); err != nil {
		return nil, nil, nil, err
	}
	addr := ""
	for i := 0; i < *cycles; i++ {
		drain(b.events)
		if err := b.incus("start", "bench-x"); err != nil {
			return nil, nil, nil, err
		}
		started, err := b.waitEvent("bench-x", "instance-started")
		if err != nil {
			return nil, nil, nil, err
		}
		// Served through the LB, and filled, measured at once.
		served := make(chan time.Time, 1)
		go func() {
			for d := time.Now().Add(30 * time.Second); time.Now().Before(d); time.Sleep(10 * time.Millisecond) {
				if _, by, err := b.get("/"); err == nil && by == "bench-x" {
					served <- time.Now()
					return
				}
			}
			served <- time.Time{}
		}()
		for addr = b.ipv4("bench-x"); addr == ""; addr = b.ipv4("bench-x") {
			time.Sleep(20 * time.Millisecond)
		}
		filledAt, err := b.waitSlot(addr, true)
		if err != nil {
			return nil, nil, nil, err
		}
		startLat = append(startLat, filledAt.Sub(started))
		if t := <-served; !t.IsZero() {
			servedLat = append(servedLat, t.Sub(started))
		}
		drain(b.events)
		if err := b.incus("stop", "--force", "bench-x"); err != nil {
			return nil, nil, nil, err
		}
		stopped, err := b.waitEvent("bench-x", "instance-stopped")
		if err != nil {
			return nil, nil, nil, err
		}
		parkedAt, err := b.waitSlot(addr, false)
		if err != nil {
			return nil, nil, nil, err
		}
		stopLat = append(stopLat, parkedAt.Sub(stopped))
		fmt.Fprintf(os.Stderr, "cycle %d: stop->parked %s, start->filled %s\n", i+1, ms(stopLat[i]), ms(startLat[i]))
	}
	return stopLat, startLat, servedLat, b.incus("config", "unset", "bench-x", "user.role")
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

type churnResult struct {
	requests, failed int
	p99              time.Duration
	worstWindow      int
	reloads          int
}

// churn sends a fixed-rate load (open loop: a request every 1/rate s
// whatever the answers) while members are drained and rejoin, and the spec
// changes structurally now and then.
func (b *bench) churn() (churnResult, error) {
	before, err := b.rt.ShowProc(context.Background())
	if err != nil {
		return churnResult{}, err
	}
	type sample struct {
		at  time.Time
		lat time.Duration
		ok  bool
	}
	var (
		mu      sync.Mutex
		samples []sample
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(*rate))
		defer tick.Stop()
		for range tick.C {
			if stop.Load() {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				resp, err := client.Get("http://" + b.lbAddr + "/api/v1/items")
				ok := err == nil && resp.StatusCode == 200
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				samples = append(samples, sample{start, time.Since(start), ok})
				mu.Unlock()
			}()
		}
	}()
	members := []string{"bench-a", "bench-b", "bench-c"}
	every := max(1, *changes / *reloads)
	for i := 0; i < *changes; i++ {
		m := members[(i/2)%len(members)]
		if i%2 == 0 {
			err = b.incus("config", "set", m, "user.incuslb.drain=true")
		} else {
			err = b.incus("config", "unset", m, "user.incuslb.drain")
		}
		if err != nil {
			break
		}
		if (i+1)%every == 0 {
			if err = b.writeSpec(fmt.Sprintf("%ds", 60+(i+1)/every%2)); err != nil {
				break
			}
		}
		time.Sleep(400 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // let the last change settle under load
	stop.Store(true)
	wg.Wait()
	if err != nil {
		return churnResult{}, err
	}
	after, err := b.rt.ShowProc(context.Background())
	if err != nil {
		return churnResult{}, err
	}
	r := churnResult{requests: len(samples), reloads: after.Reloads - before.Reloads}
	var lats []time.Duration
	windows := map[int64]int{}
	var first, last time.Time
	for _, s := range samples {
		if !s.ok {
			r.failed++
			continue
		}
		lats = append(lats, s.lat)
		done := s.at.Add(s.lat)
		windows[done.Unix()]++
		if first.IsZero() || done.Before(first) {
			first = done
		}
		if done.After(last) {
			last = done
		}
	}
	r.p99 = pct(lats, 99)
	r.worstWindow = -1
	for sec := first.Unix() + 1; sec < last.Unix(); sec++ { // whole seconds only
		if n := windows[sec]; r.worstWindow < 0 || n < r.worstWindow {
			r.worstWindow = n
		}
	}
	return r, nil
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
