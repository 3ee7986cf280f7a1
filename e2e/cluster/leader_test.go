//go:build cluster

package cluster

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	incuslb "github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/lease"
)

// One leader among controllers that run on the members themselves: an
// `incuslb run` in each member (a transient systemd unit), talking to its
// own member's Incus over the local unix socket, each with its own copy of
// the specs. The LB instance is made beforehand on nest-m3 (adopted), the
// member the suite's remote talks to, so that freezing another member
// leaves both reachable. Short lease timings keep the cases quick; the
// rules are the production ones.
const leadSpec = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: c-lead}
spec:
  instance: {name: c-lead, project: default, image: lb-haproxy, adopt: true}
  defaults:
    timeouts: {server: %s}
  routes: [{pool: lead}]
  pools:
    - {name: lead, selector: {user.role: c-lead}, port: 8080}
`

// unit is the transient systemd unit of this run's controllers (a name of
// its own, so that journalctl shows no earlier run's).
func unit() string { return "incuslb-e2e-" + suffix }

var _ = Describe("one leader among controllers on the members of a real cluster", Ordered, func() {
	leaseProfile := func() string { return leaseName() + "-members" }
	member := func(args ...string) (string, error) { return host(append([]string{"exec"}, args...)...) }
	pushSpec := func(m, serverTimeout string) {
		GinkgoHelper()
		f := filepath.Join(workDir, "lead-"+m+".yaml")
		Expect(os.WriteFile(f, []byte(fmt.Sprintf(leadSpec, serverTimeout)), 0o644)).To(Succeed())
		_, err := host("file", "push", "-p", f, m+"/etc/incuslb-e2e/specs/lead.yaml")
		Expect(err).NotTo(HaveOccurred())
	}
	start := func(m string) {
		GinkgoHelper()
		_, _ = member(m, "--", "systemctl", "reset-failed", unit())
		_, err := member(m, "--", "systemd-run", "--unit", unit(), "--collect", "/usr/local/bin/incuslb", "run",
			"--spec", "/etc/incuslb-e2e/specs", "--resync", "2s", "--listen", "",
			"--lease", leaseProfile(), "--lease-identity", m,
			"--lease-duration", "3s", "--lease-renew-deadline", "2s", "--lease-retry", "500ms")
		Expect(err).NotTo(HaveOccurred())
	}
	logOf := func(m string) string {
		out, _ := member(m, "--", "journalctl", "-u", unit(), "-o", "cat", "--no-pager")
		return out
	}
	record := func() lease.Record {
		show, err := nest("profile", "show", remote+":"+leaseProfile())
		if err != nil {
			return lease.Record{}
		}
		return testenv.LeaseFromProfile(show)
	}
	holder := func() string { return record().Holder }
	// written is the lease generation and the server timeout the LB's
	// config was last written with.
	written := func() string {
		g, _ := nest("config", "get", remote+":c-lead", incuslb.KeyLeaderGeneration)
		gen, _ := strconv.ParseInt(strings.TrimSpace(g), 10, 64)
		cfg, _ := nest("exec", remote+":c-lead", "--", "cat", "/etc/haproxy/haproxy.cfg")
		for _, l := range strings.Split(cfg, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "timeout" && f[1] == "server" {
				return fmt.Sprint(gen, " ", f[2])
			}
		}
		return fmt.Sprint(gen, " -")
	}

	BeforeAll(func() {
		// Every member up (an earlier case may have left one stopped).
		for _, m := range members {
			_, _ = host("start", m)
		}
		Eventually(func() int {
			out, _ := nest("cluster", "list", remote+":", "-f", "csv", "-c", "ns")
			return strings.Count(out, "ONLINE")
		}, settles, time.Second).Should(Equal(3))
		nestOK("launch", remote+":lb-haproxy", remote+":c-lead", "--target", "nest-m3")
		for _, m := range members {
			_, err := host("file", "push", bin, m+"/usr/local/bin/incuslb")
			Expect(err).NotTo(HaveOccurred())
			pushSpec(m, "61s")
		}
		// nest-m1 first, so that it leads: the LB instance and the
		// suite's remote are on nest-m3.
		start("nest-m1")
		Eventually(holder, settles, 250*time.Millisecond).Should(Equal("nest-m1"))
		start("nest-m2")
		start("nest-m3")
		Eventually(written, settles, time.Second).Should(MatchRegexp(`^[1-9]\d* 61s$`))
	})
	AfterAll(func() {
		for _, m := range members {
			_, _ = host("resume", m)
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("===== controller on %s =====\n%s\n", m, logOf(m))
			}
			_, _ = member(m, "--", "systemctl", "stop", unit())
		}
		_, _ = nest("profile", "delete", remote+":"+leaseProfile())
	})

	It("1. elects one leader; the others follow and write nothing", func() {
		Consistently(holder, 3*time.Second, 250*time.Millisecond).Should(Equal("nest-m1"))
		for _, m := range []string{"nest-m2", "nest-m3"} {
			Expect(logOf(m)).NotTo(ContainSubstring(`"msg":"reconciled"`), "the controller on %s made a pass", m)
		}
		code, out := cli("status", "--lease", leaseProfile(), "c-lead")
		Expect(code).To(Equal(0), out)
		Expect(out).To(MatchRegexp(`leader: nest-m1 \(lease "[^"]+", generation \d+`))
	})

	It("2. SIGKILL the leader: another takes over within the lease time and converges a change made after the kill", func() {
		before := record()
		_, err := member("nest-m1", "--", "systemctl", "kill", "-s", "KILL", unit())
		Expect(err).NotTo(HaveOccurred())
		killed := time.Now()
		for _, m := range []string{"nest-m2", "nest-m3"} {
			pushSpec(m, "62s")
		}
		Eventually(holder, 20*time.Second, 100*time.Millisecond).Should(BeElementOf("nest-m2", "nest-m3"))
		took := time.Since(killed)
		GinkgoWriter.Printf("a new leader on the cluster after %v\n", took)
		Expect(took).To(BeNumerically("<", 3*time.Second+3*time.Second), "lease 3 s, plus a retry and the cluster's API")
		gen := record().Generation
		Expect(gen).To(BeNumerically(">", before.Generation))
		Eventually(written, settles, time.Second).Should(Equal(fmt.Sprint(gen, " 62s")))
		pushSpec("nest-m1", "62s")
		start("nest-m1") // back as a follower
	})

	It("3. a leader whose member is frozen comes back to find a newer generation, and writes nothing", func() {
		// The frozen member must be neither nest-m3 (the LB instance and
		// the suite's remote) nor hold the lease: hand it on first.
		if holder() == "nest-m3" {
			_, _ = member("nest-m3", "--", "systemctl", "stop", unit()) // releases the lease
			Eventually(holder, 20*time.Second, 100*time.Millisecond).Should(BeElementOf("nest-m1", "nest-m2"))
			start("nest-m3")
		}
		old := holder()
		Expect(old).To(BeElementOf("nest-m1", "nest-m2"))
		// Only the others' specs change: whatever the old leader writes
		// after it wakes would show as the old timeout.
		for _, m := range members {
			if m != old {
				pushSpec(m, "63s")
			}
		}
		_, err := host("pause", old)
		Expect(err).NotTo(HaveOccurred())
		Eventually(holder, settles, 250*time.Millisecond).ShouldNot(Equal(old))
		gen := record().Generation
		Eventually(written, settles, time.Second).Should(Equal(fmt.Sprint(gen, " 63s")))
		_, err = host("resume", old)
		Expect(err).NotTo(HaveOccurred())
		Consistently(written, 10*time.Second, 500*time.Millisecond).Should(Equal(fmt.Sprint(gen, " 63s")), "the old leader wrote after it woke")
		Eventually(func() string { return logOf(old) }, 30*time.Second, time.Second).Should(ContainSubstring(`"msg":"following"`))
		Expect(holder()).NotTo(Equal(old))
	})
})
