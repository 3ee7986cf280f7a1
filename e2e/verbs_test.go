//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/haproxy"
)

// The operator's verbs around a running LB: incuslb stats (the stats page
// on the host's loopback, through the instance) and incuslb logs (HAProxy's
// log ring, followed across a reload).
const (
	verbsName    = "e2e-verbs"
	verbsLB      = "e2e-verbs-lb"
	verbsBackend = "e2e-verbs-1"
)

// verbsSpecTemplate: %[1]s the project, %[2]s the connect timeout (a
// change of it reloads).
const verbsSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: e2e-verbs
spec:
  instance: {name: e2e-verbs-lb, project: %[1]s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: 2}
    slowStart: 0s
    timeouts: {connect: %[2]s}
  routes:
    - {pool: verbs_pool}
  pools:
    - {name: verbs_pool, selector: {user.role: verbs}, port: 8080, project: %[1]s, healthCheck: {path: /health}}
`

func verbsSpec(connect string) string {
	GinkgoHelper()
	path := filepath.Join(workDir, "verbs-"+connect+".yaml")
	Expect(os.WriteFile(path, []byte(withImage(fmt.Sprintf(verbsSpecTemplate, project, connect))), 0o644)).To(Succeed())
	return path
}

// verbProcess is a long-running incuslb verb (stats, logs -f).
type verbProcess struct {
	cmd    *exec.Cmd
	stdout *testenv.LockedBuffer
	stderr *testenv.LockedBuffer
	done   chan int
	once   sync.Once
	code   int
}

func startVerb(args ...string) *verbProcess {
	GinkgoHelper()
	p := &verbProcess{stdout: &testenv.LockedBuffer{}, stderr: &testenv.LockedBuffer{}, done: make(chan int, 1)}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	Expect(p.cmd.Start()).To(Succeed())
	go func() {
		err := p.cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		p.done <- code
	}()
	DeferCleanup(func() { p.stop() })
	return p
}

// stop sends SIGINT (Ctrl-C) and returns the exit code, -1 if it had to
// be killed. It logs the output.
func (p *verbProcess) stop() int {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case p.code = <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.code = -1
		}
		fmt.Fprintf(&cliLog, "$ incuslb %s  (exit %d)\n%s%s", strings.Join(p.cmd.Args[1:], " "), p.code, p.stdout.String(), p.stderr.String())
	})
	return p.code
}

func freeLoopbackPort() int {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// verbsGet sends one request through the LB and returns its status.
func verbsGet(path string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ipv4(verbsLB) + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// localGet gets a URL on this host's loopback: status and body (capped).
func localGet(url string) (int, string, error) {
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, string(body), err
}

func uniquePath(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "/" + prefix + "-" + hex.EncodeToString(b[:])
}

var _ = Describe("incuslb stats and logs on a real LB", Ordered, func() {
	BeforeAll(func() {
		backend(verbsBackend, "app", map[string]string{"user.role": "verbs"})
		code, _, stderr := cli("apply", "-f", verbsSpec("2s"))
		Expect(code).To(Equal(0), stderr)
		Eventually(func() (int, error) { return verbsGet("/") }, checkWindow, 200*time.Millisecond).Should(Equal(200))
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			GinkgoWriter.Println("===== haproxy.cfg =====")
			GinkgoWriter.Println(pull(verbsLB, haproxy.ConfigPath))
			GinkgoWriter.Println("===== incuslb log =====\n", cliLog.String())
		}
	})

	It("1. stats serves the stats page and the Prometheus metrics on loopback, through the instance, until Ctrl-C", func() {
		url := fmt.Sprintf("http://127.0.0.1:%d", freeLoopbackPort())
		p := startVerb("stats", verbsName, "--listen", strings.TrimPrefix(url, "http://"))
		Eventually(func(g Gomega) {
			code, body, err := localGet(url + "/stats")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(code).To(Equal(200))
			g.Expect(body).To(ContainSubstring("verbs_pool"), "the pool's backend on the stats page")
		}, applySettles, 500*time.Millisecond).Should(Succeed())
		Expect(p.stdout.String()).To(ContainSubstring(url + "/stats"))
		code, body, err := localGet(url + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(200))
		Expect(body).To(ContainSubstring("haproxy_process_"))
		Expect(body).To(ContainSubstring(`haproxy_backend_status{proxy="verbs_pool"`))
		Expect(p.stop()).To(Equal(0), "Ctrl-C stops it cleanly")
	})

	It("2. stats refuses to listen beyond loopback", func() {
		port := freeLoopbackPort()
		for _, listen := range []string{fmt.Sprintf("0.0.0.0:%d", port), fmt.Sprintf(":%d", port), ipv4(verbsBackend) + fmt.Sprintf(":%d", port)} {
			code, _, stderr := cli("stats", verbsName, "--listen", listen)
			Expect(code).To(Equal(2), listen)
			Expect(stderr).To(ContainSubstring("--listen"))
			Expect(stderr).To(ContainSubstring("loopback only"))
		}
	})

	It("3. logs shows the line of a request just made through the LB", func() {
		path := uniquePath("verbs-logs")
		Expect(verbsGet(path)).To(Equal(200))
		Eventually(func() string {
			_, out, _ := cli("logs", verbsName)
			return out
		}, 10*time.Second, 500*time.Millisecond).Should(MatchRegexp(`verbs_pool/srv\d+ .* 200 .*"GET %s HTTP/1.1"`, path))
		code, out, _ := cli("logs", verbsName, "-n", "1")
		Expect(code).To(Equal(0))
		Expect(strings.Split(strings.TrimSpace(out), "\n")).To(HaveLen(1))
	})

	It("4. logs -f shows a new request's line, and goes on across a reload without keeping the old worker", func() {
		p := startVerb("logs", verbsName, "-f", "-n", "1", "--runtime-via", "exec")
		first := uniquePath("verbs-follow")
		Expect(verbsGet(first)).To(Equal(200))
		Eventually(p.stdout.String, 20*time.Second, 200*time.Millisecond).Should(ContainSubstring("GET " + first + " "))

		code, out, stderr := cli("apply", "-f", verbsSpec("3s"))
		Expect(code).To(Equal(0), stderr)
		Expect(out).To(ContainSubstring("reloaded HAProxy"))
		second := uniquePath("verbs-follow")
		Eventually(func() (int, error) { return verbsGet(second) }, checkWindow, 200*time.Millisecond).Should(Equal(200))
		Eventually(p.stdout.String, 20*time.Second, 200*time.Millisecond).Should(ContainSubstring("GET " + second + " "))
		Expect(p.stderr.String()).To(ContainSubstring("reloaded: following the log of its new worker"))
		// The follower's session does not hold the old worker: it exits
		// once its own sessions are done, long before hard-stop-after.
		Eventually(func(g Gomega) {
			_, out, _ := cli("status", verbsName, "-o", "json")
			var st []struct {
				HAProxy struct{ OldWorkers []any } `json:"haproxy"`
			}
			g.Expect(json.Unmarshal([]byte(out), &st)).To(Succeed())
			g.Expect(st).To(HaveLen(1))
			g.Expect(st[0].HAProxy.OldWorkers).To(BeEmpty())
		}, 20*time.Second, 500*time.Millisecond).Should(Succeed())
		Expect(p.stop()).To(Equal(0), "Ctrl-C stops it cleanly")
	})
})
