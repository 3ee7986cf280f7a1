//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/internal/testcert"
)

const runLB = "e2e-run-lb"

const runSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: e2e-run
spec:
  instance: {name: e2e-run-lb, project: %[1]s, image: lb-haproxy}
  frontend:
    tls: {certificateFile: %[2]s}
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: 2}
    slowStart: 1s
    drainTimeout: 30s
    timeouts: {connect: 1s}
  routes:
    - {pool: run_pool}
  pools:
    - name: run_pool
      selector: {user.role: run}
      port: 8080
      sticky: {cookie: RUNSRV}
      healthCheck: {path: /health}
`

var _ = Describe("incuslb run on real Incus", Ordered, func() {
	var (
		specDir, certFile string
		ctl               *controllerProcess
		client            *http.Client
	)

	BeforeAll(func() {
		inParallel(
			func() { backend("e2e-run-a", "app", map[string]string{"user.role": "run"}) },
			func() { backend("e2e-run-b", "app", map[string]string{"user.role": "run"}) },
			func() { backend("e2e-run-c", "app", nil) },
		)
		specDir = filepath.Join(workDir, "run-specs")
		Expect(os.MkdirAll(specDir, 0o755)).To(Succeed())
		certFile = testcert.Write(workDir, "run.pem", lbHost)
		Expect(os.WriteFile(filepath.Join(specDir, "run.yaml"), []byte(withImage(fmt.Sprintf(runSpecTemplate, project, certFile))), 0o644)).To(Succeed())
		ctl = startController(specDir)
		client = runClient(certFile)
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue(), "the controller never became ready")
		Eventually(func() (int, error) { return status(client, "/") }, applySettles, 250*time.Millisecond).Should(Equal(200))
		// The new worker serves before the first pass has confirmed its
		// reload; the cases count reloads from the end of that pass.
		Eventually(ctl.log.String, applySettles, 100*time.Millisecond).Should(ContainSubstring(`"msg":"reconciled","lb":"e2e-run"`))
	})

	AfterAll(func() {
		if ctl != nil {
			ctl.stop()
		}
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			dumpLB(runLB)
			GinkgoWriter.Println("===== incuslb run log =====")
			GinkgoWriter.Println(ctl.log.String())
		}
	})

	It("1. adds a started labelled container and removes a stopped one, through the runtime API, with no reload", func() {
		before := runReloads()
		incusOK("stop", "--force", "e2e-run-c")
		incusOK("config", "set", "e2e-run-c", "user.role=run")
		for i := 0; i < 5; i++ {
			incusOK("start", "e2e-run-c")
			Eventually(func() string { return liveState("run_pool", "e2e-run-c") }, applySettles, 50*time.Millisecond).Should(Equal("UP"))
			Eventually(func() string { return runServedBy(client) }, checkWindow, 20*time.Millisecond).Should(Equal("e2e-run-c"))
			incusOK("stop", "--force", "e2e-run-c")
			Eventually(func() string { return liveState("run_pool", "e2e-run-c") }, applySettles, 50*time.Millisecond).Should(BeEmpty())
			for j := 0; j < 4; j++ {
				Expect(runServedBy(client)).NotTo(Equal("e2e-run-c"))
			}
		}
		Expect(runReloads()).To(Equal(before), "10 membership changes must not reload HAProxy")
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring(`"kind":"join"`))
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring(`"kind":"park"`))
		incusOK("config", "unset", "e2e-run-c", "user.role")
	})

	It("2. drains a member whose label is removed: its slow request completes, new requests go elsewhere", func() {
		waitLive("run_pool", "e2e-run-a", "e2e-run-b")
		cookie := cookieFor(client, "e2e-run-b")
		type result struct {
			code int
			by   string
			err  error
		}
		slow := make(chan result, 1)
		go func() {
			defer GinkgoRecover()
			req, _ := http.NewRequest("GET", "https://"+lbHost+"/slow?d=4s", nil)
			req.AddCookie(cookie)
			c := *client
			c.Timeout = 30 * time.Second
			resp, err := c.Do(req)
			if err != nil {
				slow <- result{err: err}
				return
			}
			resp.Body.Close()
			slow <- result{code: resp.StatusCode, by: resp.Header.Get("X-Served-By")}
		}()
		time.Sleep(300 * time.Millisecond) // let the slow request reach e2e-run-b
		before := runReloads()
		incusOK("config", "unset", "e2e-run-b", "user.role")
		Eventually(func() string { return liveState("run_pool", "e2e-run-b") }, applySettles, 50*time.Millisecond).Should(Equal("DRAIN"))
		for i := 0; i < 6; i++ {
			Expect(runServedBy(client)).To(Equal("e2e-run-a"), "new requests avoid the draining member")
		}
		var r result
		Eventually(slow, 15*time.Second).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.code).To(Equal(200))
		Expect(r.by).To(Equal("e2e-run-b"))
		Eventually(func() string { return liveState("run_pool", "e2e-run-b") }, applySettles, 100*time.Millisecond).Should(BeEmpty(), "parked once drained")
		Expect(runReloads()).To(Equal(before))
		incusOK("config", "set", "e2e-run-b", "user.role=run")
		Eventually(func() string { return liveState("run_pool", "e2e-run-b") }, applySettles, 50*time.Millisecond).Should(Equal("UP"))
	})

	It("3. rotates the certificate with no reload", func() {
		before := runReloads()
		old := runServedCert()
		Expect(old).To(Equal(certDER(certFile)))
		fresh := testcert.PEM(lbHost)
		Expect(os.WriteFile(certFile+".new", fresh, 0o600)).To(Succeed())
		Expect(os.Rename(certFile+".new", certFile)).To(Succeed())
		Eventually(runServedCert, applySettles, 200*time.Millisecond).Should(Equal(certDER(certFile)))
		Expect(runReloads()).To(Equal(before))
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring(`"kind":"certificate"`))
		client = runClient(certFile) // trust the new certificate from now on
		Expect(status(client, "/")).To(Equal(200))
	})

	It("3b. serves more certificates by SNI, and adds and removes one with no reload", func() {
		const other = "other.e2e.test"
		before := runReloads()
		otherFile := testcert.Write(workDir, "run-other.pem", other)
		spec := filepath.Join(specDir, "run.yaml")
		writeTLS := func(tls string) {
			GinkgoHelper()
			body := strings.Replace(withImage(fmt.Sprintf(runSpecTemplate, project, certFile)), "tls: {certificateFile: "+certFile+"}", tls, 1)
			Expect(os.WriteFile(spec+".new", []byte(body), 0o644)).To(Succeed())
			Expect(os.Rename(spec+".new", spec)).To(Succeed())
		}
		writeTLS("tls: {certificateFile: " + certFile + ", certificates: [{file: " + otherFile + "}]}")
		Eventually(func() []byte { return runServedCertFor(other) }, applySettles, 200*time.Millisecond).Should(Equal(certDER(otherFile)))
		Expect(runServedCertFor(lbHost)).To(Equal(certDER(certFile)))
		Expect(runServedCertFor("unknown.e2e.test")).To(Equal(certDER(certFile)), "a name no certificate carries gets the first (the default)")
		Expect(pull(runLB, "/etc/haproxy/certs/e2e-run.crt-list")).To(ContainSubstring("/etc/haproxy/certs/e2e-run-1.pem"))
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring("added (new ssl cert + commit + add ssl crt-list)"))
		// Back to one: the other name gets the default again.
		writeTLS("tls: {certificateFile: " + certFile + "}")
		Eventually(func() []byte { return runServedCertFor(other) }, applySettles, 200*time.Millisecond).Should(Equal(certDER(certFile)))
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring("removed (del ssl crt-list + del ssl cert)"))
		Expect(runReloads()).To(Equal(before), "certificates came and went with no reload")
		Expect(status(client, "/")).To(Equal(200))
	})

	It("4a. restores a hand-edited config", func() {
		incusOK("exec", runLB, "--", "sed", "-i", "s/timeout client 1m/timeout client 7m/", haproxy.ConfigPath)
		Expect(pull(runLB, haproxy.ConfigPath)).To(ContainSubstring("timeout client 7m"))
		Eventually(func() string { return pull(runLB, haproxy.ConfigPath) }, applySettles, 500*time.Millisecond).
			ShouldNot(ContainSubstring("timeout client 7m"))
	})

	It("4b. starts a stopped HAProxy again", func() {
		incusOK("exec", runLB, "--", "systemctl", "stop", "haproxy")
		Eventually(func() (int, error) { return status(client, "/") }, applySettles, 500*time.Millisecond).Should(Equal(200))
	})

	It("4c. recreates a deleted LB container", func() {
		incusOK("delete", "--force", runLB) // asked again while a status write runs on it
		Eventually(func() (int, error) { return status(client, "/") }, applySettles, 500*time.Millisecond).Should(Equal(200))
		waitLive("run_pool", "e2e-run-a", "e2e-run-b")
	})

	It("4d. reconnects after incusd restarts, and still converges", func() {
		restartIncusd()
		incusOK("config", "unset", "e2e-run-a", "user.role")
		Eventually(func() string { return liveState("run_pool", "e2e-run-a") }, applySettles, 100*time.Millisecond).Should(BeEmpty())
		Eventually(ctl.log.String, 5*time.Second).Should(ContainSubstring("reconnected to Incus events"))
		incusOK("config", "set", "e2e-run-a", "user.role=run")
		Eventually(func() string { return liveState("run_pool", "e2e-run-a") }, applySettles, 100*time.Millisecond).Should(Equal("UP"))
	})

	It("5. exits cleanly within a few seconds of SIGTERM", func() {
		start := time.Now()
		code := ctl.stop()
		// stop kills it (-1) when it has not exited 10 s after SIGTERM.
		Expect(code).To(Equal(0))
		GinkgoWriter.Printf("incuslb run exited %v after SIGTERM\n", time.Since(start))
		Expect(ctl.log.String()).To(ContainSubstring("incuslb run stopped"))
		ctl = nil
	})
})

// controllerProcess is `incuslb run` under test.
type controllerProcess struct {
	cmd    *exec.Cmd
	log    *testenv.LockedBuffer
	listen string
	done   chan int
	once   sync.Once
	code   int
}

func startController(specDir string) *controllerProcess {
	GinkgoHelper()
	return startControllerArgs("run", "--spec", specDir, "--resync", "5s", "--cert-root", workDir)
}

// startControllerArgs runs incuslb with args and a free --listen port.
func startControllerArgs(args ...string) *controllerProcess {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	listen := ln.Addr().String()
	ln.Close()
	p := &controllerProcess{log: &testenv.LockedBuffer{}, listen: listen, done: make(chan int, 1)}
	if !slices.Contains(args, "--lease") {
		args = append(args, "--lease", leaseProfile())
	}
	p.cmd = exec.Command(bin, append(args, "--listen", listen)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	Expect(p.cmd.Start()).To(Succeed())
	go func() {
		err := p.cmd.Wait()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		p.done <- code
	}()
	return p
}

func (p *controllerProcess) ready() bool {
	resp, err := http.Get("http://" + p.listen + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// stop sends SIGTERM and returns the exit code (-1 if it had to be killed).
func (p *controllerProcess) stop() int {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case p.code = <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.code = -1
		}
	})
	return p.code
}

func runClient(certFile string) *http.Client {
	c, _ := lbClients(certFile)
	t := c.Transport.(*http.Transport).Clone()
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(ipv4(runLB), port))
	}
	c.Transport = t
	return c
}

func runServedBy(c *http.Client) string {
	GinkgoHelper()
	return servedBy(c, "/", nil)
}

func runServedCert() []byte {
	GinkgoHelper()
	conn, err := tlsDial(ipv4(runLB) + ":443")
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// runServedCertFor is the DER of the certificate the LB serves on 443 to
// a client that asks for name (SNI).
func runServedCertFor(name string) []byte {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ipv4(runLB)+":443",
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return nil
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Raw
}

// cookieFor returns a sticky cookie that pins requests to member.
func cookieFor(c *http.Client, member string) *http.Cookie {
	GinkgoHelper()
	var found *http.Cookie
	Eventually(func() string {
		resp := get(c, "/", nil)
		if resp.Header.Get("X-Served-By") == member {
			found = cookieNamed(resp, "RUNSRV")
		}
		return resp.Header.Get("X-Served-By")
	}, checkWindow, 10*time.Millisecond).Should(Equal(member))
	Expect(found).NotTo(BeNil())
	return found
}

func runRuntime() *haproxy.Runtime { return runtimeOf(runLB) }

func runReloads() int {
	GinkgoHelper()
	return reloadCount(runRuntime())
}

// liveState is the live HAProxy state of the slot holding member (by its
// address), or "" when no slot holds it.
func liveState(pool, member string) string {
	addr := ipv4(member)
	if addr == "" {
		return ""
	}
	states, err := runRuntime().ServersState(context.Background(), pool)
	if err != nil {
		return ""
	}
	for _, s := range states {
		if s.Address == addr {
			if s.State() == "MAINT" {
				return ""
			}
			return s.State()
		}
	}
	return ""
}

func waitLive(pool string, members ...string) {
	GinkgoHelper()
	for _, m := range members {
		Eventually(func() string { return liveState(pool, m) }, checkWindow, 100*time.Millisecond).Should(Equal("UP"), m)
	}
}

func pull(inst, path string) string {
	out, _ := incus("file", "pull", inst+path, "-")
	return out
}

// restartIncusd stops the daemon and starts it again the way
// hack/incus-env.sh does; the containers keep running meanwhile.
func restartIncusd() {
	GinkgoHelper()
	out, err := exec.Command("pkill", "-TERM", "-f", "incusd --group incus-admin").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "%s", out)
	Eventually(func() error { return exec.Command("incus", "info").Run() }, 30*time.Second, 200*time.Millisecond).ShouldNot(Succeed())
	// Detached, with no pipe to this process: the daemon outlives the suite,
	// and a write to a dead pipe would kill it with SIGPIPE.
	cmd := exec.Command("/usr/libexec/incus/incusd", "--group", "incus-admin", "--logfile", "/var/log/incus/incusd.log")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	Expect(cmd.Start()).To(Succeed())
	go func() { _ = cmd.Wait() }()
	Eventually(func() error { return exec.Command("incus", "info").Run() }, 60*time.Second, 200*time.Millisecond).Should(Succeed())
}

// dumpLB writes an LB instance's config, server states and HAProxy log.
func dumpLB(name string) {
	GinkgoWriter.Printf("===== %s: haproxy.cfg =====\n", name)
	GinkgoWriter.Println(keyMaterial.ReplaceAllString(pull(name, haproxy.ConfigPath), "[key material removed]"))
	st, err := runRuntime().Command(context.Background(), "show servers state")
	GinkgoWriter.Println("===== show servers state =====")
	GinkgoWriter.Println(st, err)
	j, err := incus("exec", name, "--", "journalctl", "-u", "haproxy", "-n", "40", "--no-pager")
	GinkgoWriter.Println("===== journalctl -u haproxy =====")
	GinkgoWriter.Println(j, err)
}
