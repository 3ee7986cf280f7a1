//go:build e2e

// Package e2e is incuslb's end-to-end suite: real Incus, real HAProxy in a
// real container, backends that are real containers running testserver.
// It works in an Incus project of its own, made for the run, and removes
// only what it made. Run it with `make e2e` (after `make incus-env`).
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
)

// Named timeouts for Eventually.
const (
	instanceUp   = 90 * time.Second // a container started and answering
	checkWindow  = 30 * time.Second // health checks settle (inter 1s, fall 3, rise 2)
	applySettles = 60 * time.Second
)

// image is the image of the backends, and lbImage that of the LB
// instances: INCUSLB_E2E_IMAGE, lb-haproxy (Debian 12, HAProxy 2.6) by
// default; make e2e runs the suite once more with lb-haproxy-30 (Debian
// 13, HAProxy 3.0). Both are minbase + haproxy + what it takes to boot and
// get an address: no procps, no /bin/kill.
const image = "lb-haproxy"

var lbImage = func() string {
	if v := os.Getenv("INCUSLB_E2E_IMAGE"); v != "" {
		return v
	}
	return image
}()

// withImage points a spec's LB instance at lbImage.
func withImage(spec string) string {
	return strings.ReplaceAll(spec, "image: lb-haproxy", "image: "+lbImage)
}

var (
	project string // the suite's own Incus project
	workDir string // temporary files: binaries, specs, certificates
	bin     string // the incuslb binary under test
	server  string // the testserver binary pushed into backends
	cliLog  testenv.LockedBuffer
)

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "incuslb e2e (real Incus, real HAProxy)")
}

var _ = BeforeSuite(func() {
	_, err := exec.LookPath("incus")
	Expect(err).NotTo(HaveOccurred(), "the incus CLI is missing: run make incus-env")
	out, err := exec.Command("incus", "info").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "Incus does not answer (run make incus-env): %s", out)
	for _, img := range []string{image, lbImage} {
		out, err = exec.Command("incus", "image", "info", img).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "image %s is missing (run make incus-env): %s", img, out)
	}

	workDir, err = os.MkdirTemp("", "incuslb-e2e-")
	Expect(err).NotTo(HaveOccurred())
	root, err := filepath.Abs("..")
	Expect(err).NotTo(HaveOccurred())
	bin = filepath.Join(workDir, "incuslb")
	server = filepath.Join(workDir, "testserver")
	build := exec.Command("go", "build", "-o", bin, "./cmd/incuslb")
	build.Dir = root
	Expect(build.CombinedOutput()).Error().NotTo(HaveOccurred())
	build = exec.Command("go", "build", "-o", server, "./e2e/testserver")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	Expect(build.CombinedOutput()).Error().NotTo(HaveOccurred())

	var suffix [3]byte
	_, _ = rand.Read(suffix[:])
	project = "incuslb-e2e-" + hex.EncodeToString(suffix[:])
	// Images and profiles come from the default project.
	incusOK("project", "create", project, "-c", "features.images=false", "-c", "features.profiles=false")
	GinkgoWriter.Printf("e2e project: %s, work dir: %s, LB image: %s\n", project, workDir, lbImage)
})

var _ = AfterSuite(func() {
	if project != "" && os.Getenv("INCUSLB_E2E_KEEP") == "" {
		out, _ := exec.Command("incus", "list", "--project", project, "--format", "json").Output()
		var insts []struct{ Name string }
		_ = json.Unmarshal(out, &insts)
		for _, i := range insts {
			_, _ = incus("delete", "--force", i.Name)
		}
		_, _ = exec.Command("incus", "project", "delete", project).CombinedOutput()
		_, _ = exec.Command("incus", "profile", "delete", leaseProfile(), "--project", "default").CombinedOutput()
		// The host ends of every LB's proxy devices (Incus leaves them).
		socks, _ := filepath.Glob("/run/incuslb/" + project + "_*.sock")
		for _, s := range socks {
			_ = os.Remove(s)
		}
	}
	if workDir != "" {
		_ = os.RemoveAll(workDir)
	}
})

// leaseProfile is the leader lease of the suite's controllers: one of
// their own (removed afterwards), so that no other controller on the
// machine is in their election.
func leaseProfile() string { return "incuslb-lease-" + project }

// cliTimeout bounds every incus CLI call, so that a hung one fails the
// spec instead of the whole run.
const cliTimeout = 2 * time.Minute

// incus runs the incus CLI in the suite's project.
// incus runs the incus CLI in the suite's project. Incus refuses an
// operation on an instance while another one runs on it ("Instance is
// busy running a ... operation"), such as the status write of a
// controller's pass on an LB instance: that is asked again, for up to
// busyRetry, as an operator would.
func incus(args ...string) (string, error) {
	deadline := time.Now().Add(busyRetry)
	for {
		out, err := incusOnce(args...)
		if err == nil || !strings.Contains(out, "is busy running a") || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

const busyRetry = 30 * time.Second

func incusOnce(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "incus", append([]string{"--project", project}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("incus %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func incusOK(args ...string) string {
	GinkgoHelper()
	var out string
	var err error
	if len(args) > 0 && args[0] == "project" {
		var b []byte
		b, err = exec.Command("incus", args...).CombinedOutput()
		out = string(b)
	} else {
		out, err = incus(args...)
	}
	Expect(err).NotTo(HaveOccurred())
	return out
}

// cli runs incuslb and returns its exit code, stdout and stderr. Its
// output goes to the controller log dumped on failure.
func cli(args ...string) (int, string, string) {
	GinkgoHelper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		Expect(err).NotTo(HaveOccurred())
	}
	fmt.Fprintf(&cliLog, "$ incuslb %s  (exit %d)\n%s%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

// backend launches a container running testserver, with config keys, and
// waits until it has an address. mode is "app", "ssh" or "forgejo".
func backend(name, mode string, config map[string]string) {
	GinkgoHelper()
	args := []string{"launch", image, name}
	for k, v := range config {
		args = append(args, "-c", k+"="+v)
	}
	incusOK(args...)
	startTestserver(name, mode)
	Eventually(func() string { return ipv4(name) }, instanceUp, 200*time.Millisecond).ShouldNot(BeEmpty())
}

// startTestserver installs testserver as a systemd unit in a running
// container and waits until it runs.
func startTestserver(name, mode string) {
	GinkgoHelper()
	execStart := "/usr/local/bin/testserver"
	switch mode {
	case "forgejo":
		execStart += " -mode forgejo -addr :3000 -host forgejo.example.org"
	case "ssh": // app, and SSH on 2222 behind PROXY protocol
		execStart += " -ssh :2222 -ssh-proxy"
	}
	Expect(testenv.InstallTestserver(project, name, server, workDir, execStart)).To(Succeed())
}

// ipv4 is an instance's global IPv4 address on eth0, or "".
func ipv4(name string) string { return testenv.IPv4(project, name) }

// inParallel runs fs at once and waits for all of them.
func inParallel(fs ...func()) {
	GinkgoHelper()
	var wg sync.WaitGroup
	for _, f := range fs {
		wg.Add(1)
		go func() {
			defer GinkgoRecover()
			defer wg.Done()
			f()
		}()
	}
	wg.Wait()
}
