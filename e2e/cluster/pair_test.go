//go:build cluster

package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
)

// checkInterval is the pools' health-check interval in pairSpec: a lost
// member's backends leave their pools within two of it.
const checkInterval = 3 * time.Second

// The member killed holds a backend too: until HAProxy marks it DOWN
// (one failed check, then fall-1 more fastInterval apart), requests sent
// to it cost a connect timeout each before they are redispatched; short
// ones keep that inside the client's 1 s.
const pairSpec = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-cl}
spec:
  instance: {name: c-lb, project: default, image: lb-haproxy}
  highAvailability: {replicas: 2, virtualIP: %s/24, vrrp: {routerID: 63}}
  defaults:
    healthCheck: {interval: 3s, fastInterval: 200ms, fall: 2}
    slowStart: 0s
    timeouts: {connect: 100ms}
  routes: [{pool: capi}]
  pools:
    - {name: capi, selector: {user.role: capi}, port: 8080, healthCheck: {path: /health}}
`

var replicas = []string{"c-lb-1", "c-lb-2"}

// logTime is the time of the first line of a JSON log that matches re.
func logTime(log, re string) time.Time {
	GinkgoHelper()
	l := regexp.MustCompile(`(?m)^.*` + re + `.*$`).FindString(log)
	Expect(l).NotTo(BeEmpty(), "no log line matches %s", re)
	var line struct{ Time time.Time }
	Expect(json.Unmarshal([]byte(l), &line)).To(Succeed())
	return line.Time
}

// backendDown is when replica's HAProxy first marked a capi server DOWN
// after since, from its journal (the replica shares this host's clock).
// It waits for the cluster's API, which may stall a while after a kill.
func backendDown(replica string, since time.Time) time.Time {
	GinkgoHelper()
	re := regexp.MustCompile(`(?m)^(\d+\.\d+) .*Server capi/srv\d+ is DOWN`)
	var at time.Time
	Eventually(func() bool {
		out, err := nest("exec", remote+":"+replica, "--", "journalctl", "-u", "haproxy", "--no-pager", "-o", "short-unix",
			"--since", since.Add(-time.Second).UTC().Format("2006-01-02 15:04:05 UTC"))
		if err != nil {
			return false
		}
		for _, m := range re.FindAllStringSubmatch(out, -1) {
			f, _ := strconv.ParseFloat(m[1], 64)
			if t := time.Unix(0, int64(f*1e9)); t.After(since) {
				at = t
				return true
			}
		}
		return false
	}, 2*time.Minute, 2*time.Second).Should(BeTrue(), "the surviving replica's HAProxy never marked the killed member's backend DOWN")
	return at
}

// leadsDatabase reports whether member leads the cluster's database
// (dqlite). While the surviving members elect a new leader, Incus's API
// answers nothing that needs the database: no instance read, no exec, no
// lease renewal (seen for up to 40 s on this nested cluster), so the
// controller can park nothing; HAProxy's own checks have taken the
// backend out by then (asserted apart).
func leadsDatabase(member string) bool {
	out, _ := nest("cluster", "list", remote+":", "-f", "csv", "-c", "nr")
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(member) + `,.*database-leader`).MatchString(out)
}

// parkedInTime asserts the controller parked a lost member's backend
// within two check intervals, unless the member led the database.
func parkedInTime(took time.Duration, ledDB bool) {
	GinkgoHelper()
	if ledDB {
		GinkgoWriter.Printf("the killed member led the cluster's database: the park (%v) waited on Incus's API, not asserted\n", took)
		return
	}
	Expect(took).To(BeNumerically("<", 2*checkInterval))
}

// parkedRE matches the runtime update that takes a member's slot out.
const parkedRE = `"runtime update"[^\n]*"kind":"(park|evict)"`

// stallReport prints where the controller's passes wait when no slot was
// parked 5 s after a member was killed (a call that ignores its deadline).
func stallReport(ctl *controller, mark int, killedAt time.Time) {
	time.Sleep(time.Until(killedAt.Add(5 * time.Second)))
	if !regexp.MustCompile(parkedRE).MatchString(ctl.log.String()[mark:]) {
		GinkgoWriter.Printf("no slot parked 5 s after the kill; the controller's passes wait here:\n%s\n", ctl.stacks())
	}
}

var _ = Describe("an LB pair on a real 3-member cluster", Ordered, func() {
	var (
		ctl    *controller
		vip    string
		killed string // the member case 2 stopped
	)
	url := func() string { return "http://" + vip + "/" }
	// holder is the replica that answers for the virtual address, by the
	// host's own neighbour table (what the clients here follow) and the
	// replicas' MAC addresses (config only: no call to a member that may
	// be dead, which in a degraded cluster waits out long timeouts).
	macs := map[string]string{}
	holder := func() string {
		out, err := exec.Command("ip", "neigh", "show", vip).Output()
		if err != nil {
			return ""
		}
		f := strings.Fields(string(out))
		i := slices.Index(f, "lladdr")
		if i < 0 || i+1 >= len(f) || slices.Contains(f, "FAILED") {
			return ""
		}
		for _, r := range replicas {
			if macs[r] == "" {
				m, _ := nest("config", "get", remote+":"+r, "volatile.eth0.hwaddr")
				macs[r] = strings.TrimSpace(m)
			}
			if strings.EqualFold(macs[r], f[i+1]) {
				return r
			}
		}
		return ""
	}
	other := func(r string) string {
		if r == replicas[0] {
			return replicas[1]
		}
		return replicas[0]
	}
	memberOnline := func(m string) bool {
		out, err := nest("cluster", "list", remote+":", "-f", "csv", "-c", "ns")
		return err == nil && strings.Contains(out, m+",ONLINE")
	}
	bothRun := func() bool {
		for _, r := range replicas {
			out, err := nest("exec", remote+":"+r, "--", "systemctl", "is-active", "keepalived", "haproxy")
			if err != nil || strings.Count(out, "active") != 2 {
				return false
			}
		}
		return true
	}

	// servedByAll waits until the virtual address has served from the
	// backends on all three members.
	servedByAll := func() {
		GinkgoHelper()
		seen := map[string]bool{}
		client := &http.Client{Timeout: 2 * time.Second}
		Eventually(func() int {
			resp, err := client.Get(url())
			if err == nil {
				seen[resp.Header.Get("X-Served-By")] = true
				resp.Body.Close()
			}
			return len(seen)
		}, settles, 50*time.Millisecond).Should(Equal(3), "served by %v", seen)
	}

	BeforeAll(func() {
		// The bridge's prefix, from a member's address: .242 is outside
		// its DHCP range.
		out, err := host("list", members[0], "-c", "4", "-f", "csv")
		Expect(err).NotTo(HaveOccurred())
		a := strings.Fields(out)[0]
		vip = a[:strings.LastIndex(a, ".")] + ".242"
		var wg = make(chan struct{}, 3)
		for i, m := range members {
			go func() {
				defer GinkgoRecover()
				defer func() { wg <- struct{}{} }()
				backend(fmt.Sprintf("c-api-%d", i+1), m)
			}()
		}
		for range members {
			<-wg
		}
		dir := filepath.Join(workDir, "pair")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "pair.yaml"), []byte(fmt.Sprintf(pairSpec, vip)), 0o644)).To(Succeed())
		ctl = startController("run", "--spec", dir, "--resync", "10s")
		Eventually(func() bool { return serves(url()) }, settles, 500*time.Millisecond).Should(BeTrue())
		Eventually(holder, settles, time.Second).ShouldNot(BeEmpty())
		Eventually(bothRun, settles, time.Second).Should(BeTrue())
	})
	AfterAll(func() {
		if CurrentSpecReport().Failed() {
			GinkgoWriter.Printf("controller log:\n%s\ncli:\n%s\n", ctl.log.String(), cliLog.String())
		}
		ctl.Stop()
	})

	It("1. spreads the pair over two members and serves from backends on all three", func() {
		l1, l2 := lookup(replicas[0]).Location, lookup(replicas[1]).Location
		GinkgoWriter.Printf("replicas on %s and %s\n", l1, l2)
		Expect(l1).NotTo(Equal(l2))
		servedByAll()
	})

	It("2. hard-killing the member that holds the address costs under a second of errors; the other replica serves and the controller says so", func() {
		h := holder()
		m := lookup(h).Location
		killed = m
		p := testenv.StartPollerTimeout(url(), time.Second)
		time.Sleep(time.Second)
		ledDB := leadsDatabase(m)
		mark := ctl.log.Len()
		killedAt := time.Now()
		_, err := host("stop", "--force", m)
		Expect(err).NotTo(HaveOccurred())
		Eventually(holder, 15*time.Second, 100*time.Millisecond).Should(Equal(other(h)))
		time.Sleep(3 * time.Second)
		r := p.Finish()
		GinkgoWriter.Printf("hard kill of member %s (holding %s): %s\n", m, h, r)
		// No event comes for the member's instances, and Incus marks the
		// member offline only after 20 s (its instance list waits on the
		// member until then): the controller's own probe finds it lost
		// (--member-probe 500ms, two failed connects), and its backend
		// leaves the pool within two check intervals twice over: HAProxy's
		// checks mark it DOWN (one failed check, then fall-1 more
		// fastInterval apart), and the controller parks its slot.
		down := backendDown(other(h), killedAt)
		GinkgoWriter.Printf("member %s killed -> its backend DOWN in the surviving replica: %v\n", m, down.Sub(killedAt))
		Expect(down.Sub(killedAt)).To(BeNumerically("<", 2*checkInterval))
		var out string
		Eventually(func() string { out = ctl.log.String()[mark:]; return out }, 10*time.Second, 100*time.Millisecond).
			Should(MatchRegexp(`"cluster member lost[^\n]*"member":"` + m + `"`))
		lost := logTime(out, `"cluster member lost[^\n]*"member":"`+m+`"`)
		GinkgoWriter.Printf("member %s killed -> found lost: %v\n", m, lost.Sub(killedAt))
		Expect(lost.Sub(killedAt)).To(BeNumerically("<", 2*checkInterval))
		stallReport(ctl, mark, killedAt)
		Eventually(func() string { out = ctl.log.String()[mark:]; return out }, settles, time.Second).
			Should(MatchRegexp(`(?s)"cluster member lost[^\n]*"member":"` + m + `".*"runtime update"[^\n]*"kind":"(park|evict)"`))
		at := logTime(out[strings.Index(out, "cluster member lost"):], `"runtime update"[^\n]*"kind":"(park|evict)"`)
		GinkgoWriter.Printf("member %s killed -> its backend's slot parked: %v\ncontroller log since the kill:\n%s\n", m, at.Sub(killedAt), out)
		parkedInTime(at.Sub(killedAt), ledDB)
		// The member took a backend with it too: HAProxy cuts what is
		// still connecting to it when it marks it DOWN (on-marked-down
		// shutdown-sessions), seconds later; that counts here as well.
		Expect(r.ErrorTime).To(BeNumerically("<", time.Second))
		Eventually(func() string { _, out := cli("status", "e2e-cl"); return out }, settles, 2*time.Second).
			Should(MatchRegexp(`instance:   default/` + other(h) + ` \(Running[^\n]*\n  virtual IP: ` + vip + `/24 \(held here\)`))
	})

	It("3. the member comes back: its replica rejoins as a backup, with no flapping and no error", func() {
		h := holder()
		down := killed
		Expect(down).NotTo(BeEmpty())
		p := testenv.StartPollerTimeout(url(), time.Second)
		_, err := host("start", down)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { return memberOnline(down) }, settles, time.Second).Should(BeTrue())
		Eventually(bothRun, settles, time.Second).Should(BeTrue())
		time.Sleep(3 * time.Second)
		r := p.Finish()
		GinkgoWriter.Printf("return of member %s: %s\n", down, r)
		Expect(r.Failed).To(BeZero())
		Expect(holder()).To(Equal(h))
	})

	It("4. losing the member of the backup replica: its backend's slot is parked within 2 x interval", func() {
		// The holder's pass goes on beside the lost replica's: calls into
		// the lost one end when the member is found lost, and so does the
		// status write to it.
		m := killed
		Expect(lookup(holder()).Location).NotTo(Equal(m))
		servedByAll() // its backend is back in the holder's pool
		ledDB := leadsDatabase(m)
		mark := ctl.log.Len()
		killedAt := time.Now()
		_, err := host("stop", "--force", m)
		Expect(err).NotTo(HaveOccurred())
		stallReport(ctl, mark, killedAt)
		var out string
		Eventually(func() string { out = ctl.log.String()[mark:]; return out }, settles, 100*time.Millisecond).
			Should(MatchRegexp(`(?s)"cluster member lost[^\n]*"member":"` + m + `".*"runtime update"[^\n]*"kind":"(park|evict)"`))
		lost := logTime(out, `"cluster member lost[^\n]*"member":"`+m+`"`)
		at := logTime(out[strings.Index(out, "cluster member lost"):], `"runtime update"[^\n]*"kind":"(park|evict)"`)
		GinkgoWriter.Printf("member %s killed -> found lost: %v, its backend's slot parked: %v\ncontroller log since the kill:\n%s\n",
			m, lost.Sub(killedAt), at.Sub(killedAt), out)
		parkedInTime(at.Sub(killedAt), ledDB)
		_, err = host("start", m)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { return memberOnline(m) }, settles, time.Second).Should(BeTrue())
		Eventually(bothRun, settles, time.Second).Should(BeTrue())
	})
})
