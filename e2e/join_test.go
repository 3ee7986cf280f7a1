//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/haproxy"
)

// Joins gated by health: a member takes no client request before it has
// passed a health check, its first check comes within downInterval (not one
// interval later), and a member at an address another instance had before
// joins as fast.
const joinLB = "e2e-join-lb"

// The interval is long on purpose: a join that waited for the next regular
// check would take up to 10 s; downInterval (250ms by default) is what
// brings the first check of a joining member.
const joinSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-join}
spec:
  instance: {name: e2e-join-lb, project: %[1]s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 10s, fall: 2, rise: 1}
    slowStart: %[4]s
    timeouts: {connect: 1s, server: %[2]s}
  routes: [{pool: join_pool}]
  pools:
    - {name: join_pool, selector: {user.role: joiner}, port: 8080, healthCheck: {path: /health}, join: %[3]s}
`

// joinSoon bounds how long a join may take here: well under the 10 s
// interval, with room for a loaded CI machine.
const joinSoon = 5 * time.Second

var _ = Describe("joins gated by health on real Incus", Ordered, func() {
	var (
		ctl      *controllerProcess
		staticIP string // outside the bridge's DHCP range (hack/incus-env.sh)
		specFile string
	)
	join, slowStart := "checked", "0s"
	writeSpec := func(serverTimeout string) {
		GinkgoHelper()
		Expect(os.WriteFile(specFile+".new", []byte(withImage(fmt.Sprintf(joinSpecTemplate, project, serverTimeout, join, slowStart))), 0o644)).To(Succeed())
		Expect(os.Rename(specFile+".new", specFile)).To(Succeed())
	}
	client := &http.Client{Timeout: 3 * time.Second}
	var lbAddr string // the LB's address, looked up again after an error
	get := func() (string, error) {
		if lbAddr == "" {
			lbAddr = ipv4(joinLB)
		}
		resp, err := client.Get("http://" + lbAddr + "/")
		if err != nil {
			lbAddr = ""
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Served-By"), nil
	}
	// serves reports whether member answers one of a few requests (round
	// robin over at most two members).
	serves := func(member string) bool {
		for i := 0; i < 4; i++ {
			if by, _ := get(); by == member {
				return true
			}
		}
		return false
	}
	// launchAt starts a testserver member at a static address, not yet
	// labelled, with its health check failing when sick.
	launchAt := func(name string, sick bool) {
		GinkgoHelper()
		incusOK("launch", image, name, "--device", "eth0,ipv4.address="+staticIP)
		startTestserver(name, "app")
		if sick {
			incusOK("exec", name, "--", "touch", "/run/testserver.sick")
		}
		Eventually(func() string { return ipv4(name) }, instanceUp, 200*time.Millisecond).Should(Equal(staticIP))
	}
	// timeToServe labels member and returns how long until it serves.
	timeToServe := func(member string) time.Duration {
		GinkgoHelper()
		start := time.Now()
		Eventually(func() bool { return serves(member) }, joinSoon, 50*time.Millisecond).Should(BeTrue(),
			"%s did not serve within %v of its health check passing", member, joinSoon)
		return time.Since(start)
	}

	BeforeAll(func() {
		out := strings.TrimSpace(incusOK("network", "get", "incusbr0", "ipv4.address"))
		staticIP = strings.Join(strings.Split(strings.Split(out, "/")[0], ".")[:3], ".") + ".201"
		backend("e2e-join-1", "app", map[string]string{"user.role": "joiner"})
		dir := filepath.Join(workDir, "join-specs")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		specFile = filepath.Join(dir, "join.yaml")
		writeSpec("60s")
		ctl = startController(dir)
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue())
		Eventually(func() bool { return serves("e2e-join-1") }, applySettles, 250*time.Millisecond).Should(BeTrue())
	})
	AfterAll(func() {
		if CurrentSpecReport().Failed() {
			dumpLB(joinLB)
			fmt.Fprintf(GinkgoWriter, "controller log:\n%s\n", ctl.log.String())
		}
		ctl.stop()
	})

	It("sends a joining member no request before it passes a check, and checks it at once", func() {
		launchAt("e2e-join-2", true)
		incusOK("config", "set", "e2e-join-2", "user.role=joiner")
		Eventually(func() string { return stateAt(joinLB, "join_pool", staticIP) }, applySettles, 100*time.Millisecond).Should(Equal("DOWN"))
		// Its service answers, its check fails: 40 requests over 2 s all
		// go to the old member, and none fails.
		for i := 0; i < 40; i++ {
			by, err := get()
			Expect(err).NotTo(HaveOccurred())
			Expect(by).To(Equal("e2e-join-1"), "request %d went to a member that has not passed a check", i)
			time.Sleep(50 * time.Millisecond)
		}
		incusOK("exec", "e2e-join-2", "--", "rm", "/run/testserver.sick")
		took := timeToServe("e2e-join-2")
		fmt.Fprintf(GinkgoWriter, "healthy -> first request served: %v (interval 10s)\n", took)
	})

	It("joins a member at a reused address as fast as a fresh one", func() {
		// The LB's kernel knows the address at e2e-join-2's MAC. A new
		// instance gets the same address with another MAC.
		incusOK("delete", "--force", "e2e-join-2")
		Eventually(func() string { return stateAt(joinLB, "join_pool", staticIP) }, applySettles, 100*time.Millisecond).Should(Equal(""))
		launchAt("e2e-join-3", false)
		start := time.Now()
		incusOK("config", "set", "e2e-join-3", "user.role=joiner")
		Eventually(func() bool { return serves("e2e-join-3") }, joinSoon, 50*time.Millisecond).Should(BeTrue(),
			"a member at a reused address did not serve within %v", joinSoon)
		fmt.Fprintf(GinkgoWriter, "reused address: labelled -> first request served: %v\n", time.Since(start))
		// Its neighbour entry went as e2e-join-2 left, not on the join's path.
		Expect(ctl.log.String()).To(MatchRegexp(`"forgot neighbour entries",.*"addresses":"` + regexp.QuoteMeta(staticIP) + `"`))
	})

	It("joins at once with join: immediate, before any check", func() {
		join = "immediate"
		writeSpec("60s") // not structural: no reload
		defer func() { join = "checked"; writeSpec("60s") }()
		backend("e2e-join-4", "app", nil)
		incusOK("exec", "e2e-join-4", "--", "touch", "/run/testserver.sick")
		incusOK("config", "set", "e2e-join-4", "user.role=joiner")
		// Its check fails, yet it serves until the checks mark it down
		// (fall 2 x interval 10 s).
		Eventually(func() bool { return serves("e2e-join-4") }, joinSoon, 50*time.Millisecond).Should(BeTrue())
		incusOK("delete", "--force", "e2e-join-4")
	})

	It("loses no request to a structural reload under load", func() {
		Eventually(func() bool { return serves("e2e-join-3") }, applySettles, 50*time.Millisecond).Should(BeTrue())
		before := reloadsOf(joinLB)
		// The load goes on until HAProxy has reloaded (a pass may retry).
		failed := loadDuring(joinLB, "/", func() { writeSpec("61s") }, func() bool { return reloadsOf(joinLB) > before })
		Expect(reloadsOf(joinLB)).To(BeNumerically(">", before), "the spec change did not reload HAProxy")
		Expect(failed).To(BeEmpty())
	})

	It("cuts, on a hard kill, only the requests already sent to the member: those still connecting are redispatched", func() {
		// e2e-join-1 and e2e-join-3 serve. Half the requests take 300 ms,
		// so that some are under way at the kill.
		Eventually(func() bool { return serves("e2e-join-3") }, applySettles, 50*time.Millisecond).Should(BeTrue())
		since := time.Now().UTC().Format("2006-01-02 15:04:05")
		failed := loadDuring(joinLB, "/slow?d=300ms", func() { incusOK("stop", "--force", "e2e-join-3") }, nil)
		// HAProxy's log says where each request ended and in what state:
		// the fourth field after the server is the termination state, whose
		// second letter is the phase (C: still connecting).
		Eventually(func() string { return ctl.log.String() }, 5*time.Second).Should(ContainSubstring(`"kind":"park"`))
		out := incusOK("exec", joinLB, "--", "journalctl", "-u", "haproxy", "--since", since, "--no-pager", "-o", "cat")
		re := regexp.MustCompile(`join_pool/(srv\d+) \S+ (-?\d+) \S+ \S+ \S+ (\S{4})`)
		var cut []string
		for _, l := range strings.Split(out, "\n") {
			m := re.FindStringSubmatch(l)
			if m == nil || m[3] == "----" {
				continue
			}
			Expect(m[3][1]).NotTo(Equal(byte('C')), "a request still connecting was cut: %s", l)
			cut = append(cut, l)
		}
		fmt.Fprintf(GinkgoWriter, "hard kill under 50 rps: %d of 200 failed; HAProxy cut %d under way:\n%s\n", len(failed), len(cut), strings.Join(cut, "\n"))
		Expect(len(failed)).To(BeNumerically("<=", len(cut)), "failed requests that HAProxy did not cut: %v", failed)
	})

	It("ramps a member up under slowStart once it has passed its check", func() {
		slowStart = "10s"
		before := reloadsOf(joinLB)
		writeSpec("61s")
		defer func() { slowStart = "0s"; writeSpec("61s") }()
		Eventually(func() int { return reloadsOf(joinLB) }, applySettles, 100*time.Millisecond).Should(BeNumerically(">", before))
		backend("e2e-join-5", "app", nil)
		addr := ipv4("e2e-join-5")
		incusOK("exec", "e2e-join-5", "--", "touch", "/run/testserver.sick")
		incusOK("config", "set", "e2e-join-5", "user.role=joiner")
		Eventually(func() string { return stateAt(joinLB, "join_pool", addr) }, applySettles, 50*time.Millisecond).Should(Equal("DOWN"))
		incusOK("exec", "e2e-join-5", "--", "rm", "/run/testserver.sick")
		Eventually(func() string { return stateAt(joinLB, "join_pool", addr) }, joinSoon, 20*time.Millisecond).Should(Equal("UP"))
		// HAProxy says the server is starting (op_state 3) and throttles
		// it: its throttle (the share of its weight in effect) grows, and
		// it takes fewer requests than the full member beside it.
		var throttles []int
		served := map[string]int{}
		for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
			if t, ok := throttleOf(joinLB, "join_pool", addr); ok {
				throttles = append(throttles, t)
			}
			for i := 0; i < 4; i++ {
				if by, err := get(); err == nil {
					served[by]++
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		fmt.Fprintf(GinkgoWriter, "slowStart 10s, first 3 s: throttle %v, served %v\n", throttles, served)
		Expect(throttles).NotTo(BeEmpty(), "HAProxy reported no throttle: the member did not start slowly")
		Expect(throttles[0]).To(BeNumerically("<", 50))
		Expect(throttles[len(throttles)-1]).To(BeNumerically(">", throttles[0]))
		Expect(served["e2e-join-5"]).To(BeNumerically("<", served["e2e-join-1"]/2))
		// The ramp ends after slowStart: full weight, throttle gone.
		Eventually(func() bool { _, ok := throttleOf(joinLB, "join_pool", addr); return ok }, 15*time.Second, 250*time.Millisecond).Should(BeFalse())
		Expect(stateAt(joinLB, "join_pool", addr)).To(Equal("UP"))
		incusOK("delete", "--force", "e2e-join-5")
	})
})

// throttleOf is the throttle (percent of its weight in effect) HAProxy's
// `show stat` gives the server of pool at addr while it starts under
// slowstart; ok is false when the server runs at full weight (or is not
// found).
func throttleOf(lb, pool, addr string) (int, bool) {
	out, err := runtimeOf(lb).Command(context.Background(), "show stat -1 4 -1")
	if err != nil {
		return 0, false
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return 0, false
	}
	col := map[string]int{}
	for i, h := range strings.Split(strings.TrimPrefix(lines[0], "# "), ",") {
		col[h] = i
	}
	for _, l := range lines[1:] {
		f := strings.Split(l, ",")
		if len(f) <= col["throttle"] || f[col["pxname"]] != pool || !strings.HasPrefix(f[col["addr"]], addr+":") {
			continue
		}
		t, err := strconv.Atoi(f[col["throttle"]])
		return t, err == nil
	}
	return 0, false
}

// runtimeOf reaches the runtime API of LB instance lb through the host-side
// sockets.
func runtimeOf(lb string) *haproxy.Runtime { return runtimeIn("/run/incuslb", lb) }

// runtimeIn speaks to LB instance lb through the host sockets under dir.
func runtimeIn(dir, lb string) *haproxy.Runtime {
	base := dir + "/" + project + "_" + lb
	return &haproxy.Runtime{Admin: haproxy.UnixDialer(base + ".admin.sock"), Master: haproxy.UnixDialer(base + ".master.sock")}
}

// reloadCount is the master's reload counter. The master CLI is closed
// for a moment while the master re-executes itself on a reload (a read
// then meets "connection reset by peer"), so it asks again for a while.
func reloadCount(rt *haproxy.Runtime) int {
	GinkgoHelper()
	var p haproxy.Processes
	Eventually(func() (err error) {
		p, err = rt.ShowProc(context.Background())
		return err
	}, 15*time.Second, 100*time.Millisecond).Should(Succeed(), "the master CLI does not answer")
	return p.Reloads
}

// stateAt is the state of the slot of pool at addr (UP, DOWN, DRAIN), or ""
// when no slot holds it.
func stateAt(lb, pool, addr string) string {
	states, err := runtimeOf(lb).ServersState(context.Background(), pool)
	if err != nil {
		return "unknown: " + err.Error()
	}
	for _, s := range states {
		if s.Address == addr && s.State() != "MAINT" {
			return s.State()
		}
	}
	return ""
}

// reloadsOf is the master's reload counter of LB instance lb (-1 when it
// does not answer).
func reloadsOf(lb string) int {
	p, err := runtimeOf(lb).ShowProc(context.Background())
	if err != nil {
		return -1
	}
	return p.Reloads
}

// loadDuring sends requests through LB instance lb, 50 a second, every
// other one on a new connection and to slowPath, the others to "/" on a
// keep-alive connection; act runs after the first 2 s. It stops after 4 s
// once done (when set) reports true, and after 30 s at most. It returns the
// requests that failed.
func loadDuring(lb, slowPath string, act func(), done func() bool) []string {
	GinkgoHelper()
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
		actAt  = time.Now().Add(2 * time.Second) // when act ran (about)
	)
	// Resolved once: an `incus list` per request (50 a second) loaded the
	// 2-core CI machine enough to delay the reload by a minute, and one
	// that failed sent a request to "http:///".
	addr := ipv4(lb)
	Expect(addr).NotTo(BeEmpty(), "%s has no address", lb)
	keepAlive := &http.Client{Timeout: 10 * time.Second}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 1500; i++ { // 30 s at most: bounded
		if i >= 200 && (done == nil || done()) {
			break
		}
		c, path, kind := keepAlive, "/", "keep-alive"
		if i%2 == 1 {
			c, path, kind = fresh, slowPath, "new connection"
		}
		if i == 100 {
			act()
			mu.Lock()
			actAt = time.Now()
			mu.Unlock()
		}
		wg.Add(1)
		go func(sent time.Time) {
			defer wg.Done()
			err := answered200(c.Get("http://" + addr + path))
			if err == nil {
				return
			}
			mu.Lock()
			// When it was sent and when it failed, relative to the act,
			// say which window of a reload or a kill it fell in.
			failed = append(failed, fmt.Sprintf("%s %s sent at %+v, failed at %+v: %v", kind, path,
				sent.Sub(actAt).Round(time.Millisecond), time.Since(actAt).Round(time.Millisecond), err))
			mu.Unlock()
		}(time.Now())
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	return failed
}

// answered200 is nil for a 200 answer, else the error or the status; it
// closes the body.
func answered200(resp *http.Response, err error) error {
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
