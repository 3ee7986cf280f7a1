package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/incuslb/incuslb/e2e/testenv"
)

// (g): an LB pair behind a virtual address, with a client polling it every
// 10 ms on new connections, through hard kills, clean stops and returns of
// the replica that holds the address.

const haSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: bench-ha}
spec:
  instance: {name: bench-ha, project: %s, image: lb-haproxy}
  highAvailability:
    replicas: 2
    virtualIP: %s/24
    vrrp: {routerID: 62, advertInterval: 100ms}
  defaults:
    healthCheck: {interval: 1s}
  routes: [{pool: bench_pool}]
  pools:
    - {name: bench_pool, selector: {user.role: bench}, port: 8080, healthCheck: {path: /health}}
`

var haReplicas = []string{"bench-ha-1", "bench-ha-2"}

type failoverResult struct {
	rounds int
	// per event: failed requests, and the error window of hard kills
	killFailed, stopFailed, returnFailed []int
	maintFailed, maintOffFailed          []int
	killErrTime                          []time.Duration
	samples                              []string
}

func (b *bench) failover(rounds int, vip string) (failoverResult, error) {
	res := failoverResult{rounds: rounds}
	dir := filepath.Join(b.work, "ha-specs")
	_ = os.MkdirAll(dir, 0o755)
	if err := os.WriteFile(filepath.Join(dir, "ha.yaml"), []byte(fmt.Sprintf(haSpecTemplate, b.project, vip)), 0o644); err != nil {
		return res, err
	}
	ctl, err := b.run("controller-ha.log", "run", "--spec", dir, "--listen", "", "--resync", "1m", "--lease", b.lease())
	if err != nil {
		return res, err
	}
	defer ctl.Stop()

	url := "http://" + vip + "/"
	if err := until(2*time.Minute, func() bool { return b.holder(vip) != "" && serves(url) }); err != nil {
		return res, fmt.Errorf("the pair never served on %s: %w", vip, err)
	}
	// ready: both replicas run keepalived and HAProxy (a returned one has
	// been set up again by the controller).
	ready := func() error {
		return until(2*time.Minute, func() bool {
			for _, r := range haReplicas {
				out, err := exec.Command("incus", "--project", b.project, "exec", r, "--", "systemctl", "is-active", "keepalived", "haproxy").Output()
				if err != nil || strings.Count(string(out), "active") != 2 {
					return false
				}
			}
			return true
		})
	}
	if err := ready(); err != nil {
		return res, err
	}
	event := func(what string, act func(h string) error) (testenv.PollResult, string, error) {
		h := b.holder(vip)
		if h == "" {
			return testenv.PollResult{}, "", errors.New("no replica holds the virtual address")
		}
		p := testenv.StartPoller(url)
		time.Sleep(time.Second)
		err := act(h)
		time.Sleep(3 * time.Second)
		r := p.Finish()
		if r.Failed > 0 && len(res.samples) < 6 {
			res.samples = append(res.samples, fmt.Sprintf("%s of %s: %s", what, h, strings.Join(r.Errors, "; ")))
		}
		return r, h, err
	}
	start := func(h string) (testenv.PollResult, error) {
		r, _, err := event("return", func(string) error {
			// The controller may have started it already: it keeps its
			// LB instances running.
			if err := b.incus("start", h); err != nil && !strings.Contains(err.Error(), "already running") {
				return err
			}
			return ready()
		})
		return r, err
	}
	for i := 0; i < rounds; i++ {
		fmt.Fprintf(os.Stderr, "   failover round %d/%d\n", i+1, rounds)
		r, h, err := event("hard kill", func(h string) error { return b.incus("stop", "--force", h) })
		if err != nil {
			return res, err
		}
		res.killFailed, res.killErrTime = append(res.killFailed, r.Failed), append(res.killErrTime, r.ErrorTime)
		if r, err = start(h); err != nil {
			return res, err
		}
		res.returnFailed = append(res.returnFailed, r.Failed)
		r, h, err = event("clean stop", func(h string) error { return b.incus("stop", h) })
		if err != nil {
			return res, err
		}
		res.stopFailed = append(res.stopFailed, r.Failed)
		if r, err = start(h); err != nil {
			return res, err
		}
		res.returnFailed = append(res.returnFailed, r.Failed)
		r, h, err = event("maintenance on", func(h string) error { return b.cli("maintenance", "on", h, "--project", b.project) })
		if err != nil {
			return res, err
		}
		res.maintFailed = append(res.maintFailed, r.Failed)
		r, _, err = event("maintenance off", func(string) error { return b.cli("maintenance", "off", h, "--project", b.project) })
		if err != nil {
			return res, err
		}
		res.maintOffFailed = append(res.maintOffFailed, r.Failed)
	}
	return res, nil
}

// cli runs the incuslb CLI once.
func (b *bench) cli(args ...string) error {
	out, err := exec.Command(b.bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("incuslb %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// holder is the replica whose eth0 carries vip, or "".
func (b *bench) holder(vip string) string {
	for _, r := range haReplicas {
		out, err := exec.Command("incus", "--project", b.project, "list", r, "--format", "csv", "-c", "4").Output()
		if err == nil && strings.Contains(string(out), vip+" (eth0)") {
			return r
		}
	}
	return ""
}

func serves(url string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// until polls cond every 100 ms for at most d.
func until(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func reportFailover(f failoverResult) {
	if f.rounds == 0 {
		return
	}
	sum := func(v []int) (n, worst int) {
		for _, x := range v {
			n += x
			worst = max(worst, x)
		}
		return n, worst
	}
	fmt.Printf("\n| (g) LB pair, a client polling the virtual address every 10 ms | events | failed requests (all / worst event) | time of errors (failed x 10 ms) p50 / max | target |\n|---|---|---|---|---|\n")
	n, w := sum(f.killFailed)
	fmt.Printf("| hard kill of the holder (`incus stop --force`) | %d | %d / %d | %s / %s | < 1 s of errors |\n",
		len(f.killFailed), n, w, ms(pct(f.killErrTime, 50)), ms(pct(f.killErrTime, 100)))
	n, w = sum(f.stopFailed)
	fmt.Printf("| clean stop of the holder (`incus stop`) | %d | %d / %d | | 0 errors |\n", len(f.stopFailed), n, w)
	n, w = sum(f.returnFailed)
	fmt.Printf("| return of the stopped replica (no preemption) | %d | %d / %d | | 0 errors |\n", len(f.returnFailed), n, w)
	n, w = sum(f.maintFailed)
	fmt.Printf("| `incuslb maintenance on` the holder (planned handover) | %d | %d / %d | | 0 errors |\n", len(f.maintFailed), n, w)
	n, w = sum(f.maintOffFailed)
	fmt.Printf("| `incuslb maintenance off` (it stays a backup) | %d | %d / %d | | 0 errors |\n", len(f.maintOffFailed), n, w)
	if len(f.samples) > 0 {
		fmt.Printf("\nFailures seen: %s\n", strings.Join(f.samples, " / "))
	}
}
