//go:build e2e

package e2e

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/haproxy"
)

const gitLB = "e2e-git-lb"

// gitSpec is the LoadBalancer in the repository; extra routes go before
// the default one.
func gitSpec(extraRoutes, poolTwoPort string) string {
	return withImage(fmt.Sprintf(`apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: e2e-git
spec:
  instance: {name: e2e-git-lb, project: %s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s}
  routes:
%s    - {pool: one}
  pools:
    - {name: one, selector: {user.role: gitone}, port: 8080, healthCheck: {path: /health}}
    - {name: two, selector: {user.role: gittwo}, port: %s, healthCheck: {path: /health}}
`, project, extraRoutes, poolTwoPort))
}

var _ = Describe("incuslb run from git on real Incus", Ordered, func() {
	var (
		bare, work, secretFile string
		ctl                    *controllerProcess
	)
	const secret = "e2e-webhook-secret"

	git := func(args ...string) string {
		GinkgoHelper()
		cmd := exec.Command("git", append([]string{"-C", work}, args...)...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.org",
			"GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.org")
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "git %v: %s", args, out)
		return strings.TrimSpace(string(out))
	}
	commit := func(spec, msg string) string {
		GinkgoHelper()
		Expect(os.WriteFile(filepath.Join(work, "lbs", "git.yaml"), []byte(spec), 0o644)).To(Succeed())
		git("add", ".")
		git("commit", "--quiet", "-m", msg)
		git("push", "--quiet", "origin", "main")
		return git("rev-parse", "HEAD")
	}
	post := func(sha, key, delivery string) int {
		GinkgoHelper()
		body := fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, sha)
		mac := hmac.New(sha256.New, []byte(key))
		mac.Write([]byte(body))
		req, _ := http.NewRequest("POST", "http://"+ctl.listen+"/hooks/git", strings.NewReader(body))
		req.Header.Set("X-Forgejo-Event", "push")
		req.Header.Set("X-Forgejo-Delivery", delivery)
		req.Header.Set("X-Forgejo-Signature", hex.EncodeToString(mac.Sum(nil)))
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	served := func(path string) string {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ipv4(gitLB) + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Sprint(resp.StatusCode)
		}
		return resp.Header.Get("X-Served-By")
	}
	statusOut := func() string {
		_, out, _ := cli("status", "e2e-git")
		return out
	}
	start := func(args ...string) {
		GinkgoHelper()
		ctl = startControllerArgs(append([]string{"run", "--git-repo", "file://" + bare, "--git-branch", "main", "--git-path", "lbs",
			"--git-dir", filepath.Join(workDir, "gitcache"), "--resync", "5s", "--cert-root", filepath.Join(workDir, "git-certs")}, args...)...)
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue())
	}

	BeforeAll(func() {
		inParallel(
			func() { backend("e2e-git-1", "app", map[string]string{"user.role": "gitone"}) },
			func() { backend("e2e-git-2", "app", map[string]string{"user.role": "gittwo"}) },
		)
		bare, work = filepath.Join(workDir, "specs.git"), filepath.Join(workDir, "specs-work")
		Expect(os.MkdirAll(filepath.Join(workDir, "git-certs"), 0o700)).To(Succeed())
		Expect(exec.Command("git", "init", "--quiet", "--bare", "--initial-branch=main", bare).Run()).To(Succeed())
		Expect(exec.Command("git", "clone", "--quiet", bare, work).Run()).To(Succeed())
		git("checkout", "--quiet", "-b", "main")
		Expect(os.MkdirAll(filepath.Join(work, "lbs"), 0o755)).To(Succeed())
		commit(gitSpec("", "8080"), "one pool")
		secretFile = filepath.Join(workDir, "webhook.secret")
		Expect(os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)).To(Succeed())
		start("--git-interval", "1h", "--webhook-secret-file", secretFile)
		Eventually(func() string { return served("/") }, applySettles, 250*time.Millisecond).Should(Equal("e2e-git-1"))
	})

	AfterAll(func() {
		if ctl != nil {
			ctl.stop()
		}
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			GinkgoWriter.Println("===== incuslb run (git) log =====")
			GinkgoWriter.Println(ctl.log.String())
			GinkgoWriter.Println(statusOut())
		}
	})

	It("1. applies a commit that adds a pool on a signed push, and shows the commit in status", func() {
		sha := commit(gitSpec("    - {pathPrefix: /two/, pool: two}\n", "8080"), "route /two/ to pool two")
		Expect(post(sha, secret, "d-1")).To(Equal(http.StatusAccepted))
		Eventually(func() string { return served("/two/x") }, applySettles, 200*time.Millisecond).Should(Equal("e2e-git-2"))
		Eventually(statusOut, applySettles, 500*time.Millisecond).Should(ContainSubstring("commit:     " + sha))
		Expect(post(sha, secret, "d-1")).To(Equal(http.StatusAccepted), "a repeated delivery is answered, and ignored")
	})

	It("2. refuses a wrongly signed push with 401, fetches nothing and changes nothing", func() {
		before := pull(gitLB, haproxy.ConfigPath)
		sha := commit(gitSpec("    - {pathPrefix: /two/, pool: two}\n    - {pathPrefix: /2/, pool: two}\n", "8080"), "another route")
		Expect(post(sha, "not-the-secret", "d-2")).To(Equal(http.StatusUnauthorized))
		Consistently(func() string { return pull(gitLB, haproxy.ConfigPath) }, 3*time.Second, 500*time.Millisecond).Should(Equal(before))
		Expect(ctl.log.String()).NotTo(ContainSubstring(sha))
	})

	It("3. reports an invalid commit as Degraded with its error and SHA, keeps serving, and applies the next good one", func() {
		bad := commit(gitSpec("    - {pathPrefix: /two/, pool: two}\n", "70000"), "a broken port")
		Expect(post(bad, secret, "d-3")).To(Equal(http.StatusAccepted))
		Eventually(statusOut, applySettles, 500*time.Millisecond).Should(ContainSubstring("Degraded=True (InvalidSpec)"))
		out := statusOut()
		Expect(out).To(ContainSubstring("spec.pools[1].port: must be between 1 and 65535"))
		Expect(out).To(ContainSubstring(bad[:12]))
		Expect(served("/two/x")).To(Equal("e2e-git-2"), "the last good config keeps serving")

		good := commit(gitSpec("    - {pathPrefix: /two/, pool: two}\n    - {pathPrefix: /three/, pool: one}\n", "8080"), "fixed, and /three/")
		Expect(post(good, secret, "d-4")).To(Equal(http.StatusAccepted))
		Eventually(statusOut, applySettles, 500*time.Millisecond).Should(ContainSubstring("Degraded=False"))
		Expect(statusOut()).To(ContainSubstring("commit:     " + good))
		Expect(pull(gitLB, haproxy.ConfigPath)).To(ContainSubstring("path_beg /three/"))
	})

	It("4. applies a commit by polling alone, with no webhook", func() {
		ctl.stop()
		start("--git-interval", "2s")
		sha := commit(gitSpec("    - {pathPrefix: /two/, pool: two}\n", "8080"), "drop /three/")
		Eventually(func() string { return pull(gitLB, haproxy.ConfigPath) }, 30*time.Second, 500*time.Millisecond).ShouldNot(ContainSubstring("/three/"))
		Eventually(statusOut, applySettles, 500*time.Millisecond).Should(ContainSubstring("commit:     " + sha))
	})

	It("5. restores a hand-edited config on the next resync", func() {
		incusOK("exec", gitLB, "--", "sed", "-i", "s/timeout client 1m/timeout client 9m/", haproxy.ConfigPath)
		Eventually(func() string { return pull(gitLB, haproxy.ConfigPath) }, applySettles, 500*time.Millisecond).
			ShouldNot(ContainSubstring("timeout client 9m"))
		Expect(served("/two/x")).To(Equal("e2e-git-2"))
	})

	It("6. survives a hostile commit: certificates from outside the root, a symlink to /dev/zero, a 100 MB file; only that LB is Degraded", func() {
		hostile := func(extra string) string {
			return withImage(fmt.Sprintf(`apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: e2e-hostile}
spec:
  instance: {name: e2e-hostile-lb, project: %s, image: lb-haproxy}
  defaults: {healthCheck: {interval: 1s}}
  routes: [{pool: one}]
  pools: [{name: one, selector: {user.role: gitone}, port: 8080, healthCheck: {path: /health}}]
%s`, project, extra))
		}
		write := func(name, body string) {
			GinkgoHelper()
			Expect(os.WriteFile(filepath.Join(work, "lbs", name), []byte(body), 0o644)).To(Succeed())
		}
		commitAll := func(msg string) string {
			GinkgoHelper()
			git("add", "-A")
			git("commit", "--quiet", "-m", msg)
			git("push", "--quiet", "origin", "main")
			return git("rev-parse", "HEAD")
		}
		hostileStatus := func() string { _, out, _ := cli("status", "e2e-hostile"); return out }
		// A second LoadBalancer, good at first.
		write("hostile.yaml", hostile(""))
		commitAll("a second LB")
		Eventually(hostileStatus, 2*applySettles, time.Second).Should(ContainSubstring("Ready=True"))

		// Then a commit that reaches for a key on the host, with a symlink to
		// /dev/zero and a 100 MB file; the same commit changes e2e-git.
		secretKey := filepath.Join(workDir, "run.pem") // another LB's certificate and key
		Expect(os.WriteFile(secretKey, []byte("not even read"), 0o600)).To(Succeed())
		write("hostile.yaml", hostile("  frontend: {tls: {certificateFile: "+secretKey+"}}\n"))
		Expect(os.Symlink("/dev/zero", filepath.Join(work, "lbs", "zero.yaml"))).To(Succeed())
		f, err := os.Create(filepath.Join(work, "lbs", "big.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(f.Truncate(100 << 20)).To(Succeed())
		Expect(f.Close()).To(Succeed())
		write("git.yaml", gitSpec("    - {pathPrefix: /two/, pool: two}\n    - {pathPrefix: /b/, pool: two}\n", "8080"))
		bad := commitAll("hostile")
		Eventually(hostileStatus, applySettles, time.Second).Should(ContainSubstring("Degraded=True (InvalidSpec)"))
		Expect(hostileStatus()).To(ContainSubstring("outside the certificate root"))
		Expect(hostileStatus()).To(ContainSubstring(bad[:12]))
		Eventually(func() string { return pull(gitLB, haproxy.ConfigPath) }, applySettles, 500*time.Millisecond).Should(ContainSubstring("path_beg /b/"))
		Expect(statusOut()).To(ContainSubstring("Degraded=False"), "the other LB is not touched")
		Expect(ctl.log.String()).To(ContainSubstring(`"file":"lbs/zero.yaml"`))
		Expect(ctl.log.String()).To(ContainSubstring(`"file":"lbs/big.yaml"`))
		Expect(ctl.log.String()).NotTo(ContainSubstring("not even read"))
		Expect(vmHWM(ctl.cmd.Process.Pid)).To(BeNumerically("<", 200<<20), "the controller's peak memory")

		// A relative escape, then a good commit.
		write("hostile.yaml", hostile("  frontend: {tls: {certificateFile: ../../../../etc/ssl/private/x.pem}}\n"))
		up := commitAll("../ escape")
		Eventually(hostileStatus, applySettles, time.Second).Should(ContainSubstring(up[:12]))
		Expect(hostileStatus()).To(ContainSubstring("Degraded=True (InvalidSpec)"))
		Expect(os.Remove(filepath.Join(work, "lbs", "zero.yaml"))).To(Succeed())
		Expect(os.Remove(filepath.Join(work, "lbs", "big.yaml"))).To(Succeed())
		write("hostile.yaml", hostile(""))
		good := commitAll("good again")
		Eventually(hostileStatus, applySettles, time.Second).Should(ContainSubstring("commit:     " + good))
		Eventually(hostileStatus, applySettles, time.Second).Should(ContainSubstring("Degraded=False"))
	})

	It("7. refuses slow bodies and huge headers within the timeouts, and a valid push still applies", func() {
		ctl.stop()
		start("--git-interval", "1h", "--webhook-secret-file", secretFile)
		// A body trickled one byte a second: cut within the read timeout.
		conn, err := net.Dial("tcp", ctl.listen)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		_, err = fmt.Fprintf(conn, "POST /hooks/git HTTP/1.1\r\nHost: x\r\nX-Forgejo-Event: push\r\nContent-Length: 100\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		cut := make(chan time.Duration, 1)
		began := time.Now()
		go func() {
			defer GinkgoRecover()
			for i := 0; i < 60; i++ {
				if _, err := conn.Write([]byte("{")); err != nil {
					break
				}
				time.Sleep(time.Second)
			}
			cut <- time.Since(began)
		}()
		// Huge headers: 431.
		req, _ := http.NewRequest("POST", "http://"+ctl.listen+"/hooks/git", strings.NewReader("{}"))
		req.Header.Set("X-Filler", strings.Repeat("a", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusRequestHeaderFieldsTooLarge))
		// A valid push meanwhile.
		sha := commit(gitSpec("    - {pathPrefix: /two/, pool: two}\n    - {pathPrefix: /flood/, pool: two}\n", "8080"), "during a flood")
		Expect(post(sha, secret, "d-flood")).To(Equal(http.StatusAccepted))
		Eventually(func() string { return pull(gitLB, haproxy.ConfigPath) }, applySettles, 500*time.Millisecond).Should(ContainSubstring("path_beg /flood/"))
		var took time.Duration
		Eventually(cut, 30*time.Second).Should(Receive(&took))
		Expect(took).To(BeNumerically("<", 20*time.Second), "the trickled body is cut by the read timeout")
		status, _ := bufio.NewReader(conn).ReadString('\n')
		Expect(status).NotTo(ContainSubstring("202"))
	})
})

// vmHWM is the peak resident memory of a process, in bytes.
func vmHWM(pid int) int {
	GinkgoHelper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			Expect(err).NotTo(HaveOccurred())
			return kb << 10
		}
	}
	Fail("no VmHWM in /proc status")
	return 0
}
