//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// The ACME e2e runs against Pebble on the host (hack/pebble.sh up, which
// `make e2e` runs): Pebble validates HTTP-01 on port 80 of the address its
// DNS (pebble-challtestsrv) gives for a host, here the LB instance's.

const (
	acmeLB    = "e2e-acme-lb"
	acmeHostA = "a.acme.e2e.test"
	acmeHostB = "b.acme.e2e.test"
)

const acmeSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: e2e-acme
spec:
  instance: {name: e2e-acme-lb, project: %[1]s, image: lb-haproxy}
  frontend:
    tls:
      redirectHTTP: true
      acme:
        directory: https://127.0.0.1:14000/dir
        caBundle: %[2]s
        email: ops@example.org
        hosts: fromRoutes
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: 1}
    slowStart: 0s
  routes:
    - {host: a.acme.e2e.test, pool: acme_pool}
    - {host: b.acme.e2e.test, pool: acme_pool}
  pools:
    - name: acme_pool
      selector: {user.role: acme}
      port: 8080
      healthCheck: {path: /health}
`

var _ = Describe("ACME certificates through the LB, against Pebble", Ordered, func() {
	var (
		specDir, stateDir string
		ctl               *controllerProcess
		roots             *x509.CertPool
	)

	BeforeAll(func() {
		pebble("up")
		backend("e2e-acme-a", "app", map[string]string{"user.role": "acme"})
		specDir, stateDir = filepath.Join(workDir, "acme-specs"), filepath.Join(workDir, "acme-state")
		Expect(os.MkdirAll(specDir, 0o755)).To(Succeed())
		// The CA of Pebble's own HTTPS, under --cert-root (workDir).
		ca, err := os.ReadFile(filepath.Join(repoRoot(), ".cache", "pebble", "pebble.minica.pem"))
		Expect(err).NotTo(HaveOccurred())
		caFile := filepath.Join(workDir, "pebble-ca.pem")
		Expect(os.WriteFile(caFile, ca, 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(specDir, "acme.yaml"), []byte(withImage(fmt.Sprintf(acmeSpecTemplate, project, caFile))), 0o644)).To(Succeed())
		ctl = startControllerArgs("run", "--spec", specDir, "--resync", "5s", "--cert-root", workDir, "--state-dir", stateDir)
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue(), "the controller never became ready")
	})

	AfterAll(func() {
		if ctl != nil {
			ctl.stop()
		}
		pebble("up") // after the outage case
		for _, h := range []string{acmeHostA, acmeHostB} {
			pebble("clear-a", h)
		}
	})

	It("1. serves a placeholder, then obtains a certificate per host over HTTP-01 through the LB, served by SNI", func() {
		Eventually(func() string { return ipv4(acmeLB) }, applySettles, 250*time.Millisecond).ShouldNot(BeEmpty())
		Eventually(func() string { return acmeServed(acmeHostA).Subject.CommonName }, applySettles, 250*time.Millisecond).
			Should(Equal("incuslb placeholder e2e-acme"))
		for _, h := range []string{acmeHostA, acmeHostB} {
			pebble("add-a", h, ipv4(acmeLB))
		}
		renew(ctl, "e2e-acme") // at once, not after the backoff of the orders that found no address
		roots = pebbleRoots()
		for _, h := range []string{acmeHostA, acmeHostB} {
			Eventually(func() error { return acmeVerify(h, roots) }, 2*time.Minute, time.Second).Should(Succeed(), "%s\n%s", h, ctl.log.String())
			Expect(acmeServed(h).DNSNames).To(Equal([]string{h}))
		}
		// Requests by name reach the pool over the issued certificates.
		for _, h := range []string{acmeHostA, acmeHostB} {
			Expect(acmeGet(h, roots, "/")).To(Equal(200))
		}
		// State: 0600 files under a 0700 directory.
		for _, f := range []string{"acme/certificates/e2e-acme_a.acme.e2e.test.pem"} {
			fi, err := os.Stat(filepath.Join(stateDir, f))
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		}
		Expect(ctl.log.String()).NotTo(ContainSubstring("PRIVATE KEY"))
		// The status names each certificate's source and next renewal.
		Eventually(func() string { return incusOK("config", "get", acmeLB, "user.incuslb.certificates") }, 30*time.Second, time.Second).
			Should(And(ContainSubstring(`"source":"acme https://127.0.0.1:14000/dir"`), ContainSubstring(`"nextRenewal"`), ContainSubstring(acmeHostB)))
		// The challenge is answered over plain HTTP before the redirect to
		// https (a token put by hand through the runtime API).
		rt := acmeRuntime()
		m := haproxy.ACMEMapPath(&specs.LoadBalancer{Metadata: specs.ObjectMeta{Name: "e2e-acme"}}, haproxy.Options{})
		Expect(rt.AddACMEToken(context.Background(), m, "e2e-token", "e2e-token.thumb")).To(Succeed())
		body, code := acmeHTTP("/.well-known/acme-challenge/e2e-token")
		Expect(code).To(Equal(200))
		Expect(body).To(Equal("e2e-token.thumb"))
		Expect(rt.DelACMEToken(context.Background(), m, "e2e-token")).To(Succeed())
		_, code = acmeHTTP("/.well-known/acme-challenge/e2e-token")
		Expect(code).To(Equal(301), "an unknown token falls through to the redirect")
	})

	It("2. renews both under load with no reload and no failed request", func() {
		before := map[string]string{acmeHostA: acmeServed(acmeHostA).SerialNumber.String(), acmeHostB: acmeServed(acmeHostB).SerialNumber.String()}
		reloads := acmeReloads()
		failed := acmeLoadDuring(roots, func() { renew(ctl, "e2e-acme") }, func() bool {
			return acmeServed(acmeHostA).SerialNumber.String() != before[acmeHostA] &&
				acmeServed(acmeHostB).SerialNumber.String() != before[acmeHostB]
		})
		Expect(acmeServed(acmeHostA).SerialNumber.String()).NotTo(Equal(before[acmeHostA]), ctl.log.String())
		Expect(acmeServed(acmeHostB).SerialNumber.String()).NotTo(Equal(before[acmeHostB]))
		Expect(failed).To(BeEmpty())
		Expect(acmeReloads()).To(Equal(reloads), "renewed certificates are swapped through the runtime API")
	})

	It("3. a controller that takes over with an empty state dir recovers the certificates from the LB, ordering none", func() {
		served := acmeServed(acmeHostA).SerialNumber.String()
		Expect(ctl.stop()).To(Equal(0))
		stateDir = filepath.Join(workDir, "acme-state-2")
		ctl = startControllerArgs("run", "--spec", specDir, "--resync", "5s", "--cert-root", workDir, "--state-dir", stateDir)
		Eventually(ctl.log.String, applySettles, time.Second).Should(ContainSubstring("certificate recovered"))
		Eventually(func() error {
			_, err := os.Stat(filepath.Join(stateDir, "acme/certificates/e2e-acme_b.acme.e2e.test.pem"))
			return err
		}, applySettles, time.Second).Should(Succeed())
		Expect(ctl.log.String()).NotTo(ContainSubstring("certificate obtained"))
		Expect(acmeServed(acmeHostA).SerialNumber.String()).To(Equal(served))
	})

	It("4. a CA outage during renewal keeps the old certificates serving and reports the failure", func() {
		served := acmeServed(acmeHostA).SerialNumber.String()
		pebble("down")
		renew(ctl, "e2e-acme")
		Eventually(func() string { return incusOK("config", "get", acmeLB, "user.incuslb.certificates") }, time.Minute, time.Second).
			Should(ContainSubstring(`"error":"acme`), ctl.log.String())
		Expect(acmeServed(acmeHostA).SerialNumber.String()).To(Equal(served))
		Expect(acmeGetInsecure(acmeHostA)).To(Equal(200))
		Expect(metrics(ctl)).To(MatchRegexp(`incuslb_acme_failures_total\{lb="e2e-acme",reason="[a-zA-Z]+"\} [1-9]`))
		code, out, _ := cli("status", "e2e-acme")
		Expect(code).To(Equal(0), out)
		Expect(out).To(ContainSubstring("last order failed"))
		GinkgoWriter.Println(out)
	})

	It("5. obtains a wildcard certificate over DNS-01 through bind9 (RFC 2136 updates signed with TSIG)", func() {
		pebble("up") // after the outage: bind9 and the DNS-01 Pebble too
		key, err := os.ReadFile(filepath.Join(repoRoot(), ".cache", "pebble", "bind", "tsig.key"))
		Expect(err).NotTo(HaveOccurred())
		keyFile := filepath.Join(workDir, "tsig.key")
		Expect(os.WriteFile(keyFile, key, 0o600)).To(Succeed())
		spec := fmt.Sprintf(acmeDNSSpecTemplate, project, filepath.Join(workDir, "pebble-ca.pem"), keyFile)
		Expect(os.WriteFile(filepath.Join(specDir, "acme-dns.yaml"), []byte(withImage(spec)), 0o644)).To(Succeed())
		roots := pebbleRoots("dns")
		const name = "anything.w.dns01.e2e.test"
		served := func() error {
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ipv4("e2e-acme-dns-lb")+":443",
				&tls.Config{ServerName: name, RootCAs: roots})
			if err != nil {
				return err
			}
			defer conn.Close()
			if got := conn.ConnectionState().PeerCertificates[0].DNSNames; len(got) != 1 || got[0] != "*.w.dns01.e2e.test" {
				return fmt.Errorf("served names %v", got)
			}
			return nil
		}
		Eventually(served, 3*time.Minute, 2*time.Second).Should(Succeed(), ctl.log.String())
		secret := strings.SplitN(strings.SplitN(string(key), `secret "`, 2)[1], `"`, 2)[0]
		Expect(secret).NotTo(BeEmpty())
		Expect(ctl.log.String()).NotTo(ContainSubstring(secret), "the TSIG secret is never logged")
	})
})

const acmeDNSSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: e2e-acme-dns
spec:
  instance: {name: e2e-acme-dns-lb, project: %[1]s, image: lb-haproxy}
  frontend:
    tls:
      acme:
        directory: https://127.0.0.1:14001/dir
        caBundle: %[2]s
        hosts: ['*.w.dns01.e2e.test']
        challenge: dns-01
        dnsUpdate: {nameserver: '127.0.0.1:8054', tsigKeyFile: %[3]s}
  routes:
    - {pool: acme_pool}
  pools:
    - name: acme_pool
      selector: {user.role: acme}
      port: 8080
`

// repoRoot is the repository's top directory (the suite runs in e2e/).
func repoRoot() string {
	GinkgoHelper()
	root, err := filepath.Abs("..")
	Expect(err).NotTo(HaveOccurred())
	return root
}

// pebble runs hack/pebble.sh with args.
func pebble(args ...string) {
	GinkgoHelper()
	out, err := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "hack", "pebble.sh")}, args...)...).CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "hack/pebble.sh %v: %s", args, out)
}

// pebbleRoots is the pool of Pebble's issuing root (new at each start);
// "dns" for the DNS-01 Pebble's.
func pebbleRoots(which ...string) *x509.CertPool {
	GinkgoHelper()
	out, err := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "hack", "pebble.sh"), "roots"}, which...)...).Output()
	Expect(err).NotTo(HaveOccurred())
	pool := x509.NewCertPool()
	Expect(pool.AppendCertsFromPEM(out)).To(BeTrue())
	return pool
}

// renew asks the controller to renew the LB's certificates now.
func renew(p *controllerProcess, lb string) {
	GinkgoHelper()
	resp, err := http.Post("http://"+p.listen+"/acme/renew/"+lb, "", nil)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(200))
}

func metrics(p *controllerProcess) string {
	GinkgoHelper()
	resp, err := http.Get("http://" + p.listen + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return string(b)
}

// acmeServed is the leaf the LB serves to a client asking for name.
func acmeServed(name string) *x509.Certificate {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ipv4(acmeLB)+":443",
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return &x509.Certificate{}
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// acmeVerify checks that the LB serves name a chain Pebble's roots trust.
func acmeVerify(name string, roots *x509.CertPool) error {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ipv4(acmeLB)+":443",
		&tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return err
	}
	return conn.Close()
}

func acmeClient(name string, roots *x509.CertPool) *http.Client {
	addr := ipv4(acmeLB) + ":443"
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		},
	}}
}

func acmeGet(name string, roots *x509.CertPool, path string) (int, error) {
	resp, err := acmeClient(name, roots).Get("https://" + name + path)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func acmeGetInsecure(name string) (int, error) { return acmeGet(name, nil, "/") }

// acmeHTTP gets path over plain HTTP, following no redirect.
func acmeHTTP(path string) (string, int) {
	GinkgoHelper()
	c := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get("http://" + ipv4(acmeLB) + path)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), resp.StatusCode
}

func acmeRuntime() *haproxy.Runtime { return runtimeOf(acmeLB) }

func acmeReloads() int {
	GinkgoHelper()
	return reloadCount(acmeRuntime())
}

// acmeLoadDuring sends HTTPS requests to the LB, 20 a second, each on a new
// connection (a new handshake sees the certificate served then), by turns
// for each host, verified against roots; act runs after 1 s. It stops 2 s
// after done reports true, or after 60 s. It returns the failed requests.
func acmeLoadDuring(roots *x509.CertPool, act func(), done func() bool) []string {
	GinkgoHelper()
	var (
		mu     sync.Mutex
		failed []string
		wg     sync.WaitGroup
	)
	clients := map[string]*http.Client{acmeHostA: acmeClient(acmeHostA, roots), acmeHostB: acmeClient(acmeHostB, roots)}
	var doneAt time.Time
	for i := 0; i < 1200; i++ { // 60 s at most
		if i == 20 {
			act()
		}
		if i > 20 && i%10 == 0 && doneAt.IsZero() && done() {
			doneAt = time.Now()
		}
		if !doneAt.IsZero() && time.Since(doneAt) > 2*time.Second {
			break
		}
		host := acmeHostA
		if i%2 == 1 {
			host = acmeHostB
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := answered200(clients[host].Get("https://" + host + "/"))
			if err == nil {
				return
			}
			mu.Lock()
			failed = append(failed, host+": "+err.Error())
			mu.Unlock()
		}()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	return failed
}
