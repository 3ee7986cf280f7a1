//go:build e2e

package e2e

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/internal/testcert"
	"github.com/incuslb/incuslb/specs"
)

// Mutual TLS to the backends: a backend that requires a client certificate
// from its own CA; the LB presents backendTLS.clientCertificateFile and
// verifies the backend against backendTLS.ca (a private CA).
const (
	mtlsLB       = "e2e-mtls-lb"
	mtlsGood     = "e2e-mtls-a" // its certificate is from the CA the spec trusts
	mtlsRogue    = "e2e-mtls-b" // its certificate is from another CA
	mtlsHost     = "api.mtls.test"
	mtlsSpecName = "mtls.yaml"
)

// mtlsSpecTemplate: %[1]s project, %[2]s the rogue backend's address.
const mtlsSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: e2e-mtls
spec:
  instance: {name: e2e-mtls-lb, project: %[1]s, image: lb-haproxy}
  defaults:
    healthCheck: {interval: 1s, fall: 2, rise: 1}
    slowStart: 0s
    timeouts: {connect: 1s}
  routes:
    - {pathPrefix: /rogue/, pool: rogue_pool}
    - {pool: mtls_pool}
  pools:
    - name: mtls_pool
      selector: {user.role: mtls}
      port: 8443
      backendTLS: {sni: api.mtls.test, clientCertificateFile: client.pem, ca: server-ca.pem}
      healthCheck: {path: /health}
    - name: rogue_pool
      servers: [{name: rogue, address: "%[2]s:8443"}]
      backendTLS: {sni: api.mtls.test, clientCertificateFile: client.pem, ca: server-ca.pem}
      healthCheck: {path: /health}
`

var _ = Describe("mTLS to backends on real Incus", Ordered, func() {
	var (
		dir, spec  string
		serverCA   *testcert.CA // issues the backends' certificates the spec trusts
		otherCA    *testcert.CA // issues the rogue backend's certificate
		clientCA   *testcert.CA // issues the LB's client certificates; the backends require it
		clientFile string
	)

	BeforeAll(func() {
		dir = filepath.Join(workDir, "mtls")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		serverCA, otherCA, clientCA = testcert.NewCA("e2e server CA"), testcert.NewCA("e2e other CA"), testcert.NewCA("e2e client CA")
		inParallel(
			func() {
				mtlsBackend(mtlsGood, serverCA.Server(mtlsHost), clientCA.PEM, map[string]string{"user.role": "mtls"})
			},
			func() { mtlsBackend(mtlsRogue, otherCA.Server(mtlsHost), clientCA.PEM, nil) },
		)
		clientFile = filepath.Join(dir, "client.pem")
		Expect(os.WriteFile(clientFile, clientCA.Client("lb-client-1"), 0o600)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(dir, "server-ca.pem"), serverCA.PEM, 0o644)).To(Succeed())
		spec = filepath.Join(dir, mtlsSpecName)
		Expect(os.WriteFile(spec, []byte(withImage(fmt.Sprintf(mtlsSpecTemplate, project, ipv4(mtlsRogue)))), 0o644)).To(Succeed())
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			dumpLB(mtlsLB)
			cfg, _ := incus("file", "pull", mtlsLB+haproxy.ConfigPath, "-")
			GinkgoWriter.Println(keyMaterial.ReplaceAllString(cfg, "[key material removed]"))
		}
	})

	It("a. the backend refuses a client without a certificate, and serves the LB, which presents its own", func() {
		_, err := mtlsDirect(mtlsGood, serverCA)
		Expect(err).To(HaveOccurred(), "the backend must require a client certificate")
		GinkgoWriter.Printf("direct request without a client certificate: %v\n", err)

		code, out, stderr := cli("apply", "-f", spec)
		Expect(code).To(Equal(0), stderr)
		GinkgoWriter.Printf("incuslb apply:\n%s", out)
		mtlsWaitState("mtls_pool", mtlsGood, "UP")
		Eventually(func() (int, error) { c, _, err := mtlsGet("/"); return c, err }, checkWindow, 250*time.Millisecond).Should(Equal(200))
		_, hdr, err := mtlsGet("/")
		Expect(err).NotTo(HaveOccurred())
		Expect(hdr.Get("X-Served-By")).To(Equal(mtlsGood))
		Expect(hdr.Get("X-Client-Cert")).To(HavePrefix("CN=lb-client-1 serial="))
		GinkgoWriter.Printf("X-Client-Cert: %s\n", hdr.Get("X-Client-Cert"))
		Expect(incusOK("file", "pull", mtlsLB+haproxy.ConfigPath, "-")).To(MatchRegexp(
			`ca-file /etc/haproxy/certs/e2e-mtls\.pool-mtls_pool\.ca\.pem verifyhost api\.mtls\.test crt /etc/haproxy/certs/e2e-mtls\.pool-mtls_pool\.client\.pem`))
	})

	It("b. verifies the backends against backendTLS.ca: a server certificate from another CA is refused", func() {
		mtlsWaitState("rogue_pool", "", "DOWN")
		code, _, err := mtlsGet("/rogue/x")
		Expect(err).NotTo(HaveOccurred())
		Expect(code).To(Equal(http.StatusServiceUnavailable), "no server of rogue_pool passes verification")
		// The rogue backend itself serves (to a client that trusts its CA).
		_, err = mtlsDirect(mtlsRogue, otherCA)
		Expect(err).To(MatchError(ContainSubstring("certificate required")))
	})

	It("c. rotates the client certificate through the runtime API, with no reload", func() {
		rt := runtimeOf(mtlsLB)
		before := reloadsOf(mtlsLB)
		loaded, err := rt.LoadedHash(context.Background())
		Expect(err).NotTo(HaveOccurred())
		fresh := clientCA.Client("lb-client-2")
		Expect(os.WriteFile(clientFile+".new", fresh, 0o600)).To(Succeed())
		Expect(os.Rename(clientFile+".new", clientFile)).To(Succeed())

		code, out, stderr := cli("apply", "-f", spec)
		Expect(code).To(Equal(0), stderr)
		GinkgoWriter.Printf("incuslb apply:\n%s", out)
		Expect(out).To(ContainSubstring("backend client certificate /etc/haproxy/certs/e2e-mtls.pool-mtls_pool.client.pem swapped (set ssl cert + commit)"))
		Expect(out).NotTo(ContainSubstring("reloaded HAProxy"))

		sha, err := rt.CertSHA1(context.Background(), haproxy.BackendCertPath(mtlsLBSpec(), haproxy.Options{}, "mtls_pool"))
		Expect(err).NotTo(HaveOccurred())
		Expect(sha).To(Equal(sha1Of(fresh)), "HAProxy holds the new certificate")
		Eventually(func() string {
			_, hdr, err := mtlsGet("/")
			if err != nil {
				return err.Error()
			}
			return hdr.Get("X-Client-Cert")
		}, checkWindow, 250*time.Millisecond).Should(HavePrefix("CN=lb-client-2 serial="))
		Expect(reloadsOf(mtlsLB)).To(Equal(before), "no reload")
		Expect(rt.LoadedHash(context.Background())).To(Equal(loaded), "the same config keeps running")

		code, out, stderr = cli("apply", "-f", spec)
		Expect(code).To(Equal(0), stderr)
		Expect(out).To(ContainSubstring("unchanged"))
	})

	It("d. rotates the CA through the runtime API, with no reload: the rogue backend becomes trusted", func() {
		before := reloadsOf(mtlsLB)
		bundle := append(append([]byte{}, serverCA.PEM...), otherCA.PEM...)
		Expect(os.WriteFile(filepath.Join(dir, "server-ca.pem"), bundle, 0o644)).To(Succeed())
		code, out, stderr := cli("apply", "-f", spec)
		Expect(code).To(Equal(0), stderr)
		GinkgoWriter.Printf("incuslb apply:\n%s", out)
		Expect(out).To(ContainSubstring("backend CA /etc/haproxy/certs/e2e-mtls.pool-rogue_pool.ca.pem swapped (set ssl ca-file + commit)"))
		mtlsWaitState("rogue_pool", "", "UP")
		Eventually(func() string {
			_, hdr, _ := mtlsGet("/rogue/x")
			return hdr.Get("X-Served-By")
		}, checkWindow, 250*time.Millisecond).Should(Equal(mtlsRogue))
		Expect(reloadsOf(mtlsLB)).To(Equal(before), "no reload")
	})

})

// mtlsBackend launches a testserver that serves HTTPS with serverPEM
// (leaf then key) and requires a client certificate from clientCA.
func mtlsBackend(name string, serverPEM, clientCA []byte, config map[string]string) {
	GinkgoHelper()
	args := []string{"launch", image, name}
	for k, v := range config {
		args = append(args, "-c", k+"="+v)
	}
	incusOK(args...)
	Eventually(func() string { return ipv4(name) }, instanceUp, 200*time.Millisecond).ShouldNot(BeEmpty())
	cert, key := splitPEM(serverPEM)
	for file, body := range map[string][]byte{"server.crt": cert, "server.key": key, "client-ca.pem": clientCA} {
		local := filepath.Join(workDir, name+"-"+file)
		Expect(os.WriteFile(local, body, 0o600)).To(Succeed())
		incusOK("file", "push", "--create-dirs", "--mode", "0600", local, name+"/etc/testserver/"+file)
	}
	Expect(testenv.InstallTestserver(project, name, server, workDir,
		"/usr/local/bin/testserver -ports 8443 -tls-cert /etc/testserver/server.crt -tls-key /etc/testserver/server.key -client-ca /etc/testserver/client-ca.pem")).To(Succeed())
}

// splitPEM separates the certificate blocks from the key block.
func splitPEM(both []byte) (certs, key []byte) {
	for rest := both; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return certs, key
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(b)...)
		} else {
			key = append(key, pem.EncodeToMemory(b)...)
		}
	}
}

func mtlsLBSpec() *specs.LoadBalancer {
	return &specs.LoadBalancer{Metadata: specs.ObjectMeta{Name: "e2e-mtls"}}
}

// sha1Of is the SHA-1 fingerprint of a PEM's first certificate, as
// HAProxy's show ssl cert prints it.
func sha1Of(pemData []byte) string {
	b, _ := pem.Decode(pemData)
	sum := sha1.Sum(b.Bytes)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// mtlsGet sends a plain HTTP request to the LB on a new connection.
func mtlsGet(path string) (int, http.Header, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + net.JoinHostPort(ipv4(mtlsLB), "80") + path)
	if err != nil {
		return 0, http.Header{}, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, nil
}

// mtlsDirect sends a request straight to a backend with no client
// certificate, trusting ca.
func mtlsDirect(name string, ca *testcert.CA) (int, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: mtlsHost}}}
	resp, err := c.Get("https://" + net.JoinHostPort(ipv4(name), "8443") + "/health")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// mtlsWaitState waits until the server of pool for member ("" for a static
// server) has state, as incuslb status reports it.
func mtlsWaitState(pool, member, state string) {
	GinkgoHelper()
	Eventually(func() string {
		return serverStateOf("e2e-mtls", pool, member)
	}, checkWindow, 250*time.Millisecond).Should(Equal(state), "%s/%s", pool, member)
}
