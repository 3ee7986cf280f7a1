//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/specs"
)

// Weights and canaries: a member's weight label and a pool's canary split
// change who gets new requests through the runtime API, with no reload;
// a sticky client keeps its server.
const weightsLB = "e2e-weights-lb"

const weightsSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-weights}
spec:
  instance: {name: e2e-weights-lb, project: %[1]s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s, fall: 2, rise: 1}
    slowStart: 0s
    timeouts: {connect: 1s}
  routes: [{pool: w_pool}]
  pools:
    - name: w_pool
      selector: {user.role: weights-api}
      port: 8080
      healthCheck: {path: /health}
      sticky: {cookie: WSRV}
%[2]s`

// weightsRequests is how many requests a share is measured over.
const weightsRequests = 400

var _ = Describe("weights and canaries on real Incus", Ordered, func() {
	var (
		ctl      *controllerProcess
		specFile string
	)
	const stable1, stable2, canary = "e2e-weights-1", "e2e-weights-2", "e2e-weights-c"
	writeSpec := func(canaryPercent int) {
		GinkgoHelper()
		extra := ""
		if canaryPercent >= 0 {
			extra = fmt.Sprintf("      canary: {selector: {user.role: weights-canary}, percent: %d}\n", canaryPercent)
		}
		Expect(os.WriteFile(specFile+".new", []byte(withImage(fmt.Sprintf(weightsSpecTemplate, project, extra))), 0o644)).To(Succeed())
		Expect(os.Rename(specFile+".new", specFile)).To(Succeed())
	}
	client := &http.Client{Timeout: 3 * time.Second}
	// one sends a request (with cookie, when set) and says who served it.
	one := func(cookie *http.Cookie) (string, *http.Response, error) {
		req, _ := http.NewRequest("GET", "http://"+ipv4(weightsLB)+"/", nil)
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return "", resp, fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Served-By"), resp, nil
	}
	// shares sends weightsRequests requests without a cookie and counts
	// who served them.
	shares := func() map[string]int {
		GinkgoHelper()
		addr := ipv4(weightsLB)
		count := map[string]int{}
		for i := 0; i < weightsRequests; i++ {
			resp, err := client.Get("http://" + addr + "/")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200))
			count[resp.Header.Get("X-Served-By")]++
		}
		fmt.Fprintf(GinkgoWriter, "shares over %d requests: %v\n", weightsRequests, count)
		return count
	}
	// weightOf is the live weight of the slot that holds member.
	weightOf := func(member string) int {
		states, err := runtimeOf(weightsLB).ServersState(context.Background(), "w_pool")
		if err != nil {
			return -1
		}
		addr := ipv4(member)
		for _, s := range states {
			if s.Address == addr && addr != "" {
				return s.Weight
			}
		}
		return -1
	}
	weights := func() string {
		return fmt.Sprintf("%d/%d/%d", weightOf(stable1), weightOf(stable2), weightOf(canary))
	}
	hash := func() string { h, _ := runtimeOf(weightsLB).LoadedHash(context.Background()); return h }
	// stickyTo returns the cookie of a response served by member.
	stickyTo := func(member string) *http.Cookie {
		GinkgoHelper()
		var found *http.Cookie
		Eventually(func() string {
			by, resp, err := one(nil)
			if err == nil && by == member {
				found = cookieNamed(resp, "WSRV")
			}
			return by
		}, checkWindow, 10*time.Millisecond).Should(Equal(member))
		Expect(found).NotTo(BeNil())
		return found
	}
	keepsServer := func(cookie *http.Cookie, member string) {
		GinkgoHelper()
		for i := 0; i < 20; i++ {
			by, _, err := one(cookie)
			Expect(err).NotTo(HaveOccurred())
			Expect(by).To(Equal(member), "request %d with %s's cookie", i, member)
		}
	}

	BeforeAll(func() {
		inParallel(
			func() { backend(stable1, "app", map[string]string{"user.role": "weights-api"}) },
			func() { backend(stable2, "app", map[string]string{"user.role": "weights-api"}) },
			func() { backend(canary, "app", map[string]string{"user.role": "weights-canary"}) },
		)
		dir := filepath.Join(workDir, "weights-specs")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		specFile = filepath.Join(dir, "weights.yaml")
		writeSpec(-1)
		ctl = startController(dir)
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue())
		Eventually(func() string {
			return stateAt(weightsLB, "w_pool", ipv4(stable1)) + stateAt(weightsLB, "w_pool", ipv4(stable2))
		},
			applySettles, 250*time.Millisecond).Should(Equal("UPUP"))
	})
	AfterAll(func() {
		// The weight changes the controller made, for the record.
		for _, l := range strings.Split(ctl.log.String(), "\n") {
			if strings.Contains(l, `"kind":"weight"`) || strings.Contains(l, "member label ignored") {
				fmt.Fprintln(GinkgoWriter, l)
			}
		}
		if CurrentSpecReport().Failed() {
			dumpLB(weightsLB)
			fmt.Fprintf(GinkgoWriter, "controller log:\n%s\n", ctl.log.String())
		}
		ctl.stop()
	})

	It("a: weight 0 takes a member out of new requests and the label's removal brings it back, with no reload; a bad label is reported", func() {
		reloads, loaded := reloadsOf(weightsLB), hash()
		incusOK("config", "set", stable1, specs.WeightKey+"=0")
		Eventually(weights, applySettles, 250*time.Millisecond).Should(Equal("0/1/-1"))
		got := shares()
		Expect(got[stable1]).To(Equal(0), "a member at weight 0 got new requests")
		Expect(got[stable2]).To(Equal(weightsRequests))

		incusOK("config", "unset", stable1, specs.WeightKey)
		Eventually(weights, applySettles, 250*time.Millisecond).Should(Equal("1/1/-1"))
		got = shares()
		Expect(got[stable1]).To(BeNumerically(">=", weightsRequests/4))
		Expect(got[stable2]).To(BeNumerically(">=", weightsRequests/4))
		Expect(reloadsOf(weightsLB)).To(Equal(reloads), "a weight change reloaded HAProxy")
		Expect(hash()).To(Equal(loaded))

		// A bad value: the member keeps the default weight and serves;
		// the status names the instance and the key.
		incusOK("config", "set", stable1, specs.WeightKey+"=heavy")
		Eventually(func() string {
			return incusOK("config", "get", weightsLB, controller.KeyConditions)
		}, applySettles, 250*time.Millisecond).Should(And(ContainSubstring("InvalidMemberLabel"),
			ContainSubstring(stable1+": "+specs.WeightKey+`=\"heavy\"`)))
		Expect(weights()).To(Equal("1/1/-1"))
		Expect(shares()[stable1]).To(BeNumerically(">=", weightsRequests/4))
		incusOK("config", "unset", stable1, specs.WeightKey)
		Eventually(func() string {
			return incusOK("config", "get", weightsLB, controller.KeyConditions)
		}, applySettles, 250*time.Millisecond).ShouldNot(ContainSubstring("InvalidMemberLabel"))
		Expect(reloadsOf(weightsLB)).To(Equal(reloads))
	})

	It("b: a canary takes its percent of new requests, the split moves with no reload, and sticky clients keep their server", func() {
		reloads, loaded := reloadsOf(weightsLB), hash()
		writeSpec(20)
		Eventually(weights, applySettles, 250*time.Millisecond).Should(Equal("2/2/1"))
		Eventually(func() string { return stateAt(weightsLB, "w_pool", ipv4(canary)) }, checkWindow, 100*time.Millisecond).Should(Equal("UP"))
		got := shares()
		Expect(got[canary]).To(And(BeNumerically(">=", weightsRequests*10/100), BeNumerically("<=", weightsRequests*30/100)),
			"the canary's share at 20%%: %v", got)
		toCanary, toStable := stickyTo(canary), stickyTo(stable1)

		writeSpec(50)
		Eventually(weights, applySettles, 250*time.Millisecond).Should(Equal("1/1/2"))
		got = shares()
		Expect(got[canary]).To(And(BeNumerically(">=", weightsRequests*35/100), BeNumerically("<=", weightsRequests*65/100)),
			"the canary's share at 50%%: %v", got)
		keepsServer(toCanary, canary)
		keepsServer(toStable, stable1)

		// Percent 0: the canary takes no new request, but a client it
		// already serves keeps it.
		writeSpec(0)
		Eventually(weights, applySettles, 250*time.Millisecond).Should(Equal("1/1/0"))
		Expect(shares()[canary]).To(Equal(0))
		keepsServer(toCanary, canary)
		Expect(reloadsOf(weightsLB)).To(Equal(reloads), "the canary's split reloaded HAProxy")
		Expect(hash()).To(Equal(loaded))
		Expect(strings.Count(ctl.log.String(), "reloading HAProxy")).To(BeNumerically("<=", 1), "only the first config is a reload")
	})
})
