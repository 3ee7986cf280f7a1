//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/lease"
)

// One leader among controllers: three `incuslb run` with the same lease
// (an Incus profile, updated by ETag compare-and-swap), each reading its
// own copy of the specs. Short lease timings keep the case quick; the
// rules are the production ones.
const leadSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-lead}
spec:
  instance: {name: e2e-lead-lb, project: %[1]s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s}
    timeouts: {server: %[2]s}
  routes: [{pool: lead_pool}]
  pools:
    - {name: lead_pool, selector: {user.role: lead}, port: 8080, healthCheck: {path: /health}}
`

const leadLB = "e2e-lead-lb"

var _ = Describe("one leader among controllers on real Incus", Ordered, func() {
	leaseName := func() string { return leaseProfile() + "-lead" }
	var (
		ctls = map[string]*controllerProcess{}
		dirs = map[string]string{}
	)
	writeSpec := func(id, serverTimeout string) {
		GinkgoHelper()
		f := filepath.Join(dirs[id], "lead.yaml")
		Expect(os.WriteFile(f+".new", []byte(withImage(fmt.Sprintf(leadSpecTemplate, project, serverTimeout))), 0o644)).To(Succeed())
		Expect(os.Rename(f+".new", f)).To(Succeed())
	}
	start := func(id string) {
		GinkgoHelper()
		ctls[id] = startControllerArgs("run", "--spec", dirs[id], "--resync", "2s", "--lease", leaseName(), "--lease-identity", id,
			"--lease-duration", "3s", "--lease-renew-deadline", "2s", "--lease-retry", "500ms")
	}
	record := func() lease.Record {
		out, err := incus("profile", "show", leaseName(), "--project", "default")
		if err != nil {
			return lease.Record{}
		}
		return testenv.LeaseFromProfile(out)
	}
	holder := func() string { return record().Holder }
	// written is the lease generation and the server timeout the LB's
	// config was last written with.
	written := func() (int64, string) {
		g, _ := incus("config", "get", leadLB, controller.KeyLeaderGeneration) // "" until the instance exists
		gen, _ := strconv.ParseInt(strings.TrimSpace(g), 10, 64)
		cfg, _ := incus("exec", leadLB, "--", "cat", "/etc/haproxy/haproxy.cfg")
		for _, l := range strings.Split(cfg, "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "timeout" && f[1] == "server" {
				return gen, f[2]
			}
		}
		return gen, ""
	}
	others := func(not string) []string {
		var out []string
		for id, c := range ctls {
			if id != not && c != nil {
				out = append(out, id)
			}
		}
		return out
	}

	BeforeAll(func() {
		backend("e2e-lead-1", "app", map[string]string{"user.role": "lead"})
		for _, id := range []string{"c1", "c2", "c3"} {
			dirs[id] = filepath.Join(workDir, "lead-"+id)
			Expect(os.MkdirAll(dirs[id], 0o755)).To(Succeed())
			writeSpec(id, "60s")
		}
		start("c1")
		Eventually(holder, applySettles, 250*time.Millisecond).Should(Equal("c1"))
		start("c2")
		start("c3")
		Eventually(func() int64 { g, _ := written(); return g }, applySettles, 250*time.Millisecond).Should(BeNumerically(">", 0))
	})
	AfterAll(func() {
		for id, c := range ctls {
			if c == nil {
				continue
			}
			_ = c.cmd.Process.Signal(syscall.SIGCONT)
			c.stop()
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Printf("===== controller %s =====\n%s\n", id, c.log.String())
			}
		}
		_, _ = incus("profile", "delete", leaseName(), "--project", "default")
	})

	It("1. elects one leader; the others follow and write nothing", func() {
		Consistently(holder, 3*time.Second, 250*time.Millisecond).Should(Equal("c1"))
		for _, id := range []string{"c2", "c3"} {
			Expect(ctls[id].log.String()).NotTo(ContainSubstring(`"msg":"reconciled"`), "%s made a pass", id)
			Expect(ctls[id].ready()).To(BeTrue(), "a follower is ready (its caches are warm)")
		}
		code, out, _ := cli("status", "--lease", leaseName(), leadLB[:len(leadLB)-3])
		Expect(code).To(Equal(0))
		Expect(out).To(MatchRegexp(`leader: c1 \(lease "[^"]+", generation \d+`))
	})

	It("2. apply refuses while the lease is held, unless --force", func() {
		spec := filepath.Join(dirs["c1"], "lead.yaml")
		code, _, stderr := cli("apply", "--lease", leaseName(), "-f", spec)
		Expect(code).NotTo(Equal(0))
		Expect(stderr).To(ContainSubstring("c1 holds the leader lease"))
		code, _, stderr = cli("apply", "--lease", leaseName(), "--force", "-f", spec)
		Expect(code).To(Equal(0), stderr)
	})

	It("3. SIGKILL the leader: another takes over within the lease time and converges a change made after the kill", func() {
		before := record()
		Expect(ctls["c1"].cmd.Process.Kill()).To(Succeed())
		<-ctls["c1"].done
		ctls["c1"] = nil
		killed := time.Now()
		for _, id := range others("c1") {
			writeSpec(id, "61s")
		}
		Eventually(holder, 10*time.Second, 100*time.Millisecond).Should(BeElementOf("c2", "c3"))
		took := time.Since(killed)
		GinkgoWriter.Printf("a new leader after %v\n", took)
		Expect(took).To(BeNumerically("<", 3*time.Second+2*time.Second), "lease 3 s, plus a retry and a margin")
		Expect(record().Generation).To(BeNumerically(">", before.Generation))
		Eventually(func() string { g, t := written(); return fmt.Sprint(g, " ", t) }, applySettles, 250*time.Millisecond).
			Should(Equal(fmt.Sprint(record().Generation, " 61s")))
	})

	It("4. a paused leader that comes back writes nothing: the new leader's generation wins", func() {
		old := holder()
		follower := others(old)[0]
		Expect(ctls[old].cmd.Process.Signal(syscall.SIGSTOP)).To(Succeed())
		// Only the follower's specs change: whatever the old leader writes
		// after it wakes would show as the old timeout.
		writeSpec(follower, "62s")
		Eventually(holder, 10*time.Second, 100*time.Millisecond).Should(Equal(follower))
		gen := record().Generation
		Eventually(func() string { g, t := written(); return fmt.Sprint(g, " ", t) }, applySettles, 250*time.Millisecond).
			Should(Equal(fmt.Sprint(gen, " 62s")))
		Expect(ctls[old].cmd.Process.Signal(syscall.SIGCONT)).To(Succeed())
		Consistently(func() string { g, t := written(); return fmt.Sprint(g, " ", t) }, 5*time.Second, 250*time.Millisecond).
			Should(Equal(fmt.Sprint(gen, " 62s")), "the old leader wrote after it woke")
		Eventually(func() string { return ctls[old].log.String() }, 5*time.Second, 250*time.Millisecond).
			Should(ContainSubstring(`"msg":"following"`))
	})
})
