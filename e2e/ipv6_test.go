//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"

	"github.com/incuslb/incuslb/haproxy"
)

// IPv6: an LB listening on IPv6 too (frontend.ipv6) in front of a pool that
// reaches its members on their IPv6 addresses (family: ipv6), on the test
// bridge's ULA /64 (hack/incus-env.sh), members joining and leaving.
const v6LB = "e2e-ipv6-lb"

const v6SpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-ipv6}
spec:
  instance: {name: e2e-ipv6-lb, project: %[1]s, image: lb-haproxy}
  frontend: {ipv6: true}
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: 2}
    slowStart: 0s
    timeouts: {connect: 1s}
  routes: [{pool: v6_pool}]
  pools:
    - {name: v6_pool, selector: {user.role: v6}, port: 8080, family: ipv6, healthCheck: {path: /health}}
`

// ipv6Of is an instance's global IPv6 address on eth0, or "".
func ipv6Of(name string) string { return testenv.IPv6(project, name) }

// v6Backend is backend() that also waits for the IPv6 address (SLAAC, a
// second or two after the link is up).
func v6Backend(name string) {
	GinkgoHelper()
	backend(name, "app", map[string]string{"user.role": "v6"})
	Eventually(func() string { return ipv6Of(name) }, instanceUp, 200*time.Millisecond).ShouldNot(BeEmpty())
}

// v6Servers is the live server table of v6_pool: address -> state, parked
// slots left out.
func v6Servers() map[string]string {
	states, err := runtimeOf(v6LB).ServersState(context.Background(), "v6_pool")
	if err != nil {
		return map[string]string{"error": err.Error()}
	}
	out := map[string]string{}
	for _, s := range states {
		if !haproxy.IsParked(s.Address, s.Port) {
			out[fmt.Sprintf("[%s]:%d", s.Address, s.Port)] = s.State()
		}
	}
	return out
}

// v6Get sends one request to the LB's IPv6 address (a new connection) and
// returns who served it and the peer address the backend saw.
func v6Get() (servedBy, peer string, err error) {
	addr := ipv6Of(v6LB)
	if addr == "" {
		return "", "", fmt.Errorf("the LB has no IPv6 address yet")
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(addr, "80") + "/")
	if err != nil {
		return "", "", err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Served-By"), resp.Header.Get("X-Remote-Addr"), nil
}

// v6ServedBy is the set of backends that answered n requests over IPv6.
func v6ServedBy(n int) map[string]bool {
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		if by, _, err := v6Get(); err == nil {
			seen[by] = true
		}
	}
	return seen
}

var _ = Describe("IPv6 members and listeners on real Incus", Ordered, func() {
	var specDir string

	BeforeAll(func() {
		inParallel(func() { v6Backend("e2e-ipv6-1") }, func() { v6Backend("e2e-ipv6-2") })
		specDir = filepath.Join(workDir, "ipv6")
		Expect(os.MkdirAll(specDir, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(specDir, "ipv6.yaml"), []byte(withImage(fmt.Sprintf(v6SpecTemplate, project))), 0o644)).To(Succeed())
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			GinkgoWriter.Println("===== haproxy.cfg =====")
			GinkgoWriter.Println(pull(v6LB, haproxy.ConfigPath))
			st, err := runtimeOf(v6LB).Command(context.Background(), "show servers state")
			GinkgoWriter.Println("===== show servers state =====\n", st, err)
			GinkgoWriter.Println("===== incuslb log =====\n", cliLog.String())
		}
	})

	It("1. puts the members' IPv6 addresses into HAProxy's slots and serves on the LB's IPv6 address", func() {
		code, _, stderr := cli("apply", "-f", filepath.Join(specDir, "ipv6.yaml"))
		Expect(code).To(Equal(0), stderr)
		cfg := pull(v6LB, haproxy.ConfigPath)
		Expect(cfg).To(ContainSubstring("bind [::]:80 v6only"))
		want := map[string]string{}
		for _, m := range []string{"e2e-ipv6-1", "e2e-ipv6-2"} {
			want["["+ipv6Of(m)+"]:8080"] = "UP"
			Expect(cfg).To(ContainSubstring(fmt.Sprintf("[%s]:8080 check # %s", ipv6Of(m), m)))
		}
		// show servers state, through the runtime socket: IPv6 addresses.
		Eventually(v6Servers, checkWindow, 200*time.Millisecond).Should(Equal(want))
		GinkgoWriter.Println(runtimeOf(v6LB).Command(context.Background(), "show servers state v6_pool"))

		// Requests to the LB's own IPv6 address reach both backends, and
		// each backend saw the LB's IPv6 address as its peer.
		lb6 := ipv6Of(v6LB)
		Expect(lb6).NotTo(BeEmpty())
		Eventually(func() map[string]bool { return v6ServedBy(10) }, checkWindow, 200*time.Millisecond).
			Should(Equal(map[string]bool{"e2e-ipv6-1": true, "e2e-ipv6-2": true}))
		_, peer, err := v6Get()
		Expect(err).NotTo(HaveOccurred())
		host, _, err := net.SplitHostPort(peer)
		Expect(err).NotTo(HaveOccurred())
		Expect(netip.MustParseAddr(host)).To(Equal(netip.MustParseAddr(lb6)), "the backend's peer is the LB's IPv6 address")
		// The IPv4 listener still answers.
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ipv4(v6LB) + "/")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))

		// incuslb status prints the bracketed endpoints.
		code, out, _ := cli("status", "e2e-ipv6")
		Expect(code).To(Equal(0))
		GinkgoWriter.Println(out)
		for ep := range want {
			Expect(out).To(ContainSubstring(ep))
		}
	})

	It("2. a member joins and another leaves over IPv6, through the runtime API", func() {
		ctl := startController(specDir)
		defer ctl.stop()
		Eventually(ctl.ready, applySettles, 200*time.Millisecond).Should(BeTrue())
		reloads := reloadsOf(v6LB)

		v6Backend("e2e-ipv6-3")
		Eventually(func() string { return v6Servers()["["+ipv6Of("e2e-ipv6-3")+"]:8080"] }, applySettles, 200*time.Millisecond).Should(Equal("UP"))
		Eventually(func() map[string]bool { return v6ServedBy(15) }, checkWindow, 200*time.Millisecond).
			Should(HaveKey("e2e-ipv6-3"))

		gone := "[" + ipv6Of("e2e-ipv6-2") + "]:8080"
		incusOK("delete", "--force", "e2e-ipv6-2")
		Eventually(v6Servers, applySettles, 200*time.Millisecond).ShouldNot(HaveKey(gone))
		Eventually(func() map[string]bool { return v6ServedBy(10) }, checkWindow, 200*time.Millisecond).
			Should(Equal(map[string]bool{"e2e-ipv6-1": true, "e2e-ipv6-3": true}))
		Expect(reloadsOf(v6LB)).To(Equal(reloads), "joins and leaves go through the runtime API")
		Expect(strings.Count(fmt.Sprint(v6Servers()), "UP")).To(Equal(2))
		Expect(ctl.stop()).To(Equal(0))
	})

	It("3. keeps the IPv6 members in their slots, up, across a reload", func() {
		before := v6Servers()
		Expect(before).To(HaveLen(2))
		reloads := reloadsOf(v6LB)
		spec := strings.Replace(withImage(fmt.Sprintf(v6SpecTemplate, project)), "  frontend:", "  stats: {port: 9101}\n  frontend:", 1)
		Expect(os.WriteFile(filepath.Join(specDir, "ipv6.yaml"), []byte(spec), 0o644)).To(Succeed())
		code, _, stderr := cli("apply", "-f", filepath.Join(specDir, "ipv6.yaml"))
		Expect(code).To(Equal(0), stderr)
		Expect(reloadsOf(v6LB)).To(Equal(reloads + 1))
		// The state file carried them over: up at once, not after rise checks.
		Expect(v6Servers()).To(Equal(before))
		Expect(v6ServedBy(10)).To(Equal(map[string]bool{"e2e-ipv6-1": true, "e2e-ipv6-3": true}))
	})
})
