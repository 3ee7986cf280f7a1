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

	"github.com/gorilla/websocket"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/haproxy"
)

// WebSockets through the sticky pool, with a real client library: the seed's
// chat and presence traffic.
const wsLB = "e2e-ws-lb"

const wsSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-ws}
spec:
  instance: {name: e2e-ws-lb, project: %[1]s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: 2}
    slowStart: 0s
    timeouts: {connect: 1s, client: %[2]s}
  routes: [{pool: ws_pool}]
  pools:
    - {name: ws_pool, selector: {user.role: ws}, port: 8080, sticky: {cookie: WSSRV}, healthCheck: {path: /health}}
`

func wsRuntime() *haproxy.Runtime { return runtimeOf(wsLB) }

// wsDial opens a WebSocket through the LB with cookie, and returns it and
// the backend's first message (its name).
func wsDial(cookie *http.Cookie) (*websocket.Conn, string, error) {
	return testenv.DialWS(ipv4(wsLB), cookie)
}

// echo sends msg and expects it back.
func echo(conn *websocket.Conn, msg string) error { return testenv.Echo(conn, msg) }

var _ = Describe("WebSockets through incuslb run on real Incus", Ordered, func() {
	var (
		specFile string
		ctl      *controllerProcess
		cookie   *http.Cookie        // pins to e2e-ws-1
		reloads  func() (int, error) // the master's reload counter; an error while it re-executes
	)
	writeSpec := func(client string) {
		GinkgoHelper()
		Expect(os.WriteFile(specFile+".new", []byte(withImage(fmt.Sprintf(wsSpecTemplate, project, client))), 0o644)).To(Succeed())
		Expect(os.Rename(specFile+".new", specFile)).To(Succeed())
	}
	httpGet := func(c *http.Cookie) (string, *http.Cookie) {
		req, _ := http.NewRequest("GET", "http://"+ipv4(wsLB)+"/", nil)
		if c != nil {
			req.AddCookie(c)
		}
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			return "", nil
		}
		resp.Body.Close()
		return resp.Header.Get("X-Served-By"), cookieNamed(resp, "WSSRV")
	}

	// servesSoon reports whether member serves one of a few requests
	// without a cookie (round robin).
	servesSoon := func(member string) func() bool {
		return func() bool {
			for i := 0; i < 4; i++ {
				if by, _ := httpGet(nil); by == member {
					return true
				}
			}
			return false
		}
	}

	BeforeAll(func() {
		inParallel(
			func() { backend("e2e-ws-1", "app", map[string]string{"user.role": "ws"}) },
			func() { backend("e2e-ws-2", "app", map[string]string{"user.role": "ws"}) },
		)
		dir := filepath.Join(workDir, "ws-specs")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		specFile = filepath.Join(dir, "ws.yaml")
		writeSpec("1m")
		ctl = startControllerArgs("run", "--spec", dir, "--resync", "5s")
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue())
		reloads = func() (int, error) {
			p, err := wsRuntime().ShowProc(context.Background())
			return p.Reloads, err
		}
		Eventually(func() string {
			by, c := httpGet(nil)
			if by == "e2e-ws-1" && c != nil {
				cookie = c
			}
			return by
		}, checkWindow, 50*time.Millisecond).Should(Equal("e2e-ws-1"))
		Expect(cookie).NotTo(BeNil())
	})

	AfterAll(func() {
		_, _ = incus("start", "e2e-ws-1") // unpause, if a step failed in between
		if ctl != nil {
			ctl.stop()
		}
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			GinkgoWriter.Println("===== incuslb run (ws) log =====\n", ctl.log.String())
			out, _ := wsRuntime().MasterCommand(context.Background(), "show proc")
			GinkgoWriter.Println("===== show proc =====\n", out)
		}
	})

	It("1. lands an upgrade that carries the cookie on the cookie's backend, every time", func() {
		for i := 0; i < 8; i++ {
			conn, by, err := wsDial(cookie)
			Expect(err).NotTo(HaveOccurred())
			Expect(by).To(Equal("e2e-ws-1"))
			Expect(echo(conn, "hello")).To(Succeed())
			conn.Close()
		}
	})

	It("2. keeps an open WebSocket through a membership change and a structural reload; when its backend freezes, the old worker's session is cut within fall x interval; a reconnect with the stale cookie reaches a live backend", func() {
		conn, by, err := wsDial(cookie)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(by).To(Equal("e2e-ws-1"))

		// Membership change through the runtime API: no reload.
		before, err := reloads()
		Expect(err).NotTo(HaveOccurred())
		incusOK("config", "unset", "e2e-ws-2", "user.role")
		Eventually(func() string { by, _ := httpGet(nil); return by }, applySettles, 100*time.Millisecond).Should(Equal("e2e-ws-1"))
		incusOK("config", "set", "e2e-ws-2", "user.role=ws")
		Eventually(servesSoon("e2e-ws-2"), applySettles, 200*time.Millisecond).Should(BeTrue())
		Expect(reloads()).To(Equal(before), "a membership change does not reload")
		Expect(echo(conn, "after a membership change")).To(Succeed())

		// A structural change: HAProxy reloads, the WebSocket stays in the old worker.
		writeSpec("2m")
		Eventually(reloads, applySettles, 250*time.Millisecond).Should(BeNumerically(">", before))
		Expect(echo(conn, "after a reload")).To(Succeed())
		Eventually(func() string { _, out, _ := cli("status", "e2e-ws"); return out }, applySettles, 500*time.Millisecond).
			Should(MatchRegexp(`old worker: pid \d+, [1-9]\d* session`))

		// Its backend freezes (no FIN): the current worker marks it down
		// after fall x interval (3 s), and incuslb closes the old worker's
		// session to it.
		incusOK("pause", "e2e-ws-1")
		frozen := time.Now()
		_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _, err = conn.ReadMessage()
		cut := time.Since(frozen)
		Expect(err).To(HaveOccurred(), "the session was not cut")
		GinkgoWriter.Printf("WebSocket in the old worker cut %v after the freeze\n", cut)
		Expect(cut).To(BeNumerically("<", 8*time.Second), "fall x interval (3 s) plus a small margin")
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring(`"kind":"cut"`), "closed by incuslb (the log line follows the close)")

		// A reconnect with the stale cookie reaches a live backend.
		conn2, by, err := wsDial(cookie)
		Expect(err).NotTo(HaveOccurred())
		defer conn2.Close()
		Expect(by).To(Equal("e2e-ws-2"))
		Expect(echo(conn2, "reconnected")).To(Succeed())
		incusOK("start", "e2e-ws-1")
		Eventually(func() string { return strings.TrimSpace(incusOK("list", "e2e-ws-1", "--format", "csv", "-c", "s")) }, 30*time.Second).Should(Equal("RUNNING"))
	})

	// The stop operation's event, at the start of the stop, drains the
	// member: requests already sent finish while its service shuts down
	// gracefully, and the instance-stopped event evicts, then parks its
	// slot.
	It("3. a clean incus stop of a member under load costs no request", func() {
		// Both members serve (e2e-ws-1, started again by the case before,
		// joins once it passed its checks).
		Eventually(servesSoon("e2e-ws-1"), applySettles, 200*time.Millisecond).Should(BeTrue())
		Eventually(servesSoon("e2e-ws-2"), applySettles, 200*time.Millisecond).Should(BeTrue())
		client := &http.Client{Timeout: 5 * time.Second}
		var failed, served2 int
		var errs []string
		done := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(done)
			tick := time.NewTicker(25 * time.Millisecond) // 40 rps, 8 s: bounded
			defer tick.Stop()
			for i := 0; i < 320; i++ {
				<-tick.C
				resp, err := client.Get("http://" + ipv4(wsLB) + "/")
				if err != nil {
					failed++
					errs = append(errs, err.Error())
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed++
					errs = append(errs, resp.Status)
				}
				if resp.Header.Get("X-Served-By") == "e2e-ws-2" {
					served2++
				}
			}
		}()
		time.Sleep(2 * time.Second)
		incusOK("stop", "e2e-ws-2") // clean: SIGTERM to its init, the service stops gracefully
		<-done
		Expect(failed).To(Equal(0), "failed requests: %v", errs)
		Expect(served2).To(BeNumerically(">", 0))
		Expect(ctl.log.String()).To(MatchRegexp(`"kind":"drain","change":"ws_pool/srv\d+ draining e2e-ws-2`))
		Eventually(ctl.log.String, 5*time.Second).Should(MatchRegexp(`"kind":"park","change":"ws_pool/srv\d+ parked"`))
		incusOK("start", "e2e-ws-2")
	})
})
