//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/controller"
	"github.com/incuslb/incuslb/haproxy"
)

// The observed-state cases: what HAProxy runs is learnt from HAProxy, a
// failed reload or a crash never leaves a false Ready, and incuslb never
// touches an instance it does not own.
const (
	obsLB    = "e2e-obs-lb"
	obsStray = "e2e-obs-stray"
)

// obsSpec is a plain-HTTP LB; %[2]d is the stats port (a structural
// change), %[3]s extra instance fields, %[4]s the pool's project.
const obsSpecTemplate = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: %[5]s
spec:
  instance: {name: %[6]s, project: %[1]s, image: lb-haproxy%[3]s}
  stats: {port: %[2]d}
  defaults:
    healthCheck: {interval: 1s, fall: 3, rise: 2}
    slowStart: 0s
    timeouts: {connect: 1s}
  routes:
    - {pool: obs_pool}
  pools:
    - {name: obs_pool, selector: {user.role: obs}, port: 8080, project: %[4]s, healthCheck: {path: /health}}
`

func obsSpec(name, instance string, statsPort int, extra, poolProject string) string {
	GinkgoHelper()
	path := filepath.Join(workDir, fmt.Sprintf("obs-%s-%d-%x.yaml", name, statsPort, len(extra+poolProject)))
	body := withImage(fmt.Sprintf(obsSpecTemplate, project, statsPort, extra, poolProject, name, instance))
	Expect(os.WriteFile(path, []byte(body), 0o644)).To(Succeed())
	return path
}

func obsRuntime() *haproxy.Runtime { return obsRuntimeIn("/run/incuslb") }

func obsRuntimeIn(dir string) *haproxy.Runtime { return runtimeIn(dir, obsLB) }

// loadedHash is the hash of the config HAProxy's worker runs.
func loadedHash() string {
	h, _ := obsRuntime().LoadedHash(context.Background())
	return h
}

// fileHash is the hash the config file in the instance claims.
func fileHash() string { return haproxy.ClaimedHash([]byte(pull(obsLB, haproxy.ConfigPath))) }

// userKeys is the instance's own config as `incus config show` prints it:
// what a pass that must not write would change.
func userKeys(inst string) string {
	GinkgoHelper()
	return incusOK("config", "show", inst)
}

// obsCondition is the status of condition t of LB name.
func obsCondition(name, t string) (controller.Condition, controller.Status) {
	GinkgoHelper()
	code, out, _ := cli("status", name, "-o", "json")
	Expect(code).To(Equal(0))
	var st []struct{ Status controller.Status }
	Expect(json.Unmarshal([]byte(out), &st)).To(Succeed())
	Expect(st).To(HaveLen(1))
	if c := st[0].Status.Condition(t); c != nil {
		return *c, st[0].Status
	}
	return controller.Condition{}, st[0].Status
}

func obsGet() (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + ipv4(obsLB) + "/")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

var _ = Describe("observed state on real Incus", Ordered, func() {
	var spec string

	BeforeAll(func() {
		backend("e2e-obs-1", "app", map[string]string{"user.role": "obs"})
		spec = obsSpec("e2e-obs", obsLB, 9100, "", project)
	})

	ReportAfterEach(func(r SpecReport) {
		if r.Failed() {
			GinkgoWriter.Println("===== haproxy.cfg =====")
			GinkgoWriter.Println(pull(obsLB, haproxy.ConfigPath))
			p, err := obsRuntime().MasterCommand(context.Background(), "show proc")
			GinkgoWriter.Println("===== show proc =====\n", p, err)
			GinkgoWriter.Println("===== incuslb log =====\n", cliLog.String())
		}
	})

	It("1. serves from an image with nothing but haproxy (no procps, no /bin/kill), and reports the loaded config", func() {
		code, out, stderr := cli("apply", "-f", spec)
		Expect(code).To(Equal(0), stderr)
		Expect(out).To(ContainSubstring("reloaded HAProxy"))
		_, err := incus("exec", obsLB, "--", "test", "-e", "/bin/kill")
		Expect(err).To(HaveOccurred(), "the LB image must not have /bin/kill: the suite proves incuslb does without it")
		Eventually(obsGet, checkWindow, 200*time.Millisecond).Should(Equal(200))
		Expect(loadedHash()).To(Equal(fileHash()))
		c, st := obsCondition("e2e-obs", controller.ConditionReady)
		Expect(c.Status).To(Equal("True"))
		Expect(st.ConfigHash).To(Equal(loadedHash()))
	})

	It("2. reports a reload HAProxy fails, keeps serving, and converges once the cause is gone", func() {
		before := loadedHash()
		// Something else in the container holds the port the new config binds.
		incusOK("exec", obsLB, "--", "sh", "-c",
			`nohup perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:9188", Listen => 1) or die; sleep 600' >/dev/null 2>&1 & echo $! >/run/e2e-busy.pid`)
		Eventually(func() error {
			_, err := incus("exec", obsLB, "--", "perl", "-MIO::Socket::INET", "-e", `IO::Socket::INET->new(PeerAddr => "127.0.0.1:9188") or exit 1`)
			return err
		}, 10*time.Second, 200*time.Millisecond).Should(Succeed())
		busy := obsSpec("e2e-obs", obsLB, 9188, "", project)
		code, _, stderr := cli("apply", "-f", busy)
		Expect(code).To(Equal(1))
		Expect(stderr).To(ContainSubstring("failed to load the new config"))
		Expect(stderr).To(ContainSubstring("127.0.0.1:9188"), "HAProxy's own words")
		Expect(loadedHash()).To(Equal(before), "the old worker keeps running the old config")
		Expect(obsGet()).To(Equal(200))
		c, _ := obsCondition("e2e-obs", controller.ConditionReady)
		Expect(c.Status).To(Equal("False"))
		d, _ := obsCondition("e2e-obs", controller.ConditionDegraded)
		Expect(d.Status).To(Equal("True"))
		Expect(d.Reason).To(Equal("ReloadFailed"))

		incusOK("exec", obsLB, "--", "sh", "-c", `kill $(cat /run/e2e-busy.pid)`)
		Eventually(func() int { code, _, _ := cli("apply", "-f", busy); return code }, applySettles, time.Second).Should(Equal(0))
		Expect(loadedHash()).To(Equal(fileHash()))
		Expect(loadedHash()).NotTo(Equal(before))
		c, _ = obsCondition("e2e-obs", controller.ConditionReady)
		Expect(c.Status).To(Equal("True"))
		spec = busy
	})

	It("3. SIGKILLed between the rename and the reload, run converges after a restart and reports Ready only then", func() {
		before := loadedHash()
		specDir := filepath.Join(workDir, "obs-run")
		Expect(os.MkdirAll(specDir, 0o755)).To(Succeed())
		changed := obsSpec("e2e-obs", obsLB, 9189, "", project)
		data, err := os.ReadFile(changed)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(specDir, "obs.yaml"), data, 0o644)).To(Succeed())

		os.Setenv("INCUSLB_FAILPOINT", controller.FailpointAfterRename)
		ctl := startControllerArgs("run", "--spec", specDir, "--resync", "5s")
		os.Unsetenv("INCUSLB_FAILPOINT")
		var code int
		Eventually(ctl.done, applySettles).Should(Receive(&code))
		Expect(code).NotTo(Equal(0), "killed by the failpoint")
		Expect(fileHash()).NotTo(Equal(before), "the new config was renamed into place")
		Expect(loadedHash()).To(Equal(before), "HAProxy still runs the old config")
		_, st := obsCondition("e2e-obs", controller.ConditionReady)
		Expect(st.ConfigHash).To(Equal(before), "no Ready for a config that is not loaded")

		ctl = startControllerArgs("run", "--spec", specDir, "--resync", "5s")
		defer ctl.stop()
		Eventually(loadedHash, applySettles, 250*time.Millisecond).Should(Equal(fileHash()))
		Eventually(func() string {
			c, st := obsCondition("e2e-obs", controller.ConditionReady)
			return c.Status + " " + st.ConfigHash
		}, applySettles, 500*time.Millisecond).Should(Equal("True " + fileHash()))
		Expect(obsGet()).To(Equal(200))
		Expect(ctl.stop()).To(Equal(0))
		spec = changed
	})

	It("4. never touches another LoadBalancer's instance, nor an unowned one without adopt", func() {
		keys, cfg, reloadsBefore := userKeys(obsLB), pull(obsLB, haproxy.ConfigPath), obsReloads()
		thief := obsSpec("e2e-thief", obsLB, 9100, "", project)
		for _, args := range [][]string{{"apply", "-f", thief}, {"apply", "--dry-run", "-f", thief}, {"diff", "-f", thief}} {
			code, _, stderr := cli(args...)
			Expect(code).NotTo(Equal(0), "%v", args)
			Expect(stderr).To(ContainSubstring(`belongs to LoadBalancer "e2e-obs"`))
		}
		Expect(userKeys(obsLB)).To(Equal(keys))
		Expect(pull(obsLB, haproxy.ConfigPath)).To(Equal(cfg))
		Expect(obsReloads()).To(Equal(reloadsBefore))

		incusOK("launch", image, obsStray, "-c", "user.note=keep")
		incusOK("stop", "--force", obsStray)
		strayKeys := userKeys(obsStray)
		stray := obsSpec("e2e-stray", obsStray, 9100, "", project)
		code, _, stderr := cli("apply", "-f", stray)
		Expect(code).To(Equal(1))
		Expect(stderr).To(ContainSubstring("spec.instance.adopt"))
		Expect(userKeys(obsStray)).To(Equal(strayKeys))
		out := incusOK("list", obsStray, "--format", "csv", "-c", "s")
		Expect(strings.TrimSpace(out)).To(Equal("STOPPED"), "an unowned instance is not even started")

		adopt := obsSpec("e2e-stray", obsStray, 9100, ", adopt: true", project)
		code, out, stderr = cli("apply", "-f", adopt)
		Expect(code).To(Equal(0), stderr)
		Expect(out).To(ContainSubstring("adopted the instance"))
		Expect(userKeys(obsStray)).To(ContainSubstring(controller.KeyLB + ": e2e-stray"))
		Expect(userKeys(obsStray)).To(ContainSubstring("user.note: keep"))
	})

	It("5. diff and apply --dry-run that fail write nothing", func() {
		keys, cfg := userKeys(obsLB), pull(obsLB, haproxy.ConfigPath)
		broken := obsSpec("e2e-obs", obsLB, 9190, "", "no-such-project-"+project)
		code, _, stderr := cli("diff", "-f", broken)
		Expect(code).To(Equal(2), stderr)
		Expect(stderr).To(ContainSubstring("does not exist"))
		code, _, stderr = cli("apply", "--dry-run", "-f", broken)
		Expect(code).To(Equal(1), stderr)
		Expect(userKeys(obsLB)).To(Equal(keys), "a failing dry run wrote the instance's keys")
		Expect(pull(obsLB, haproxy.ConfigPath)).To(Equal(cfg))
		// The real apply of the same spec fails too, and records it.
		code, _, _ = cli("apply", "-f", broken)
		Expect(code).To(Equal(1))
		d, _ := obsCondition("e2e-obs", controller.ConditionDegraded)
		Expect(d.Status).To(Equal("True"))
		Expect(d.Reason).To(Equal("DiscoveryFailed"))
		code, _, stderr = cli("apply", "-f", spec)
		Expect(code).To(Equal(0), stderr)
	})

	It("6. after incusd restarts with the socket directory wiped, apply starts the LB again", func() {
		dir := "/run/incuslb-e2e-apply-" + project
		defer os.RemoveAll(dir)
		// Move the LB's proxy devices to a socket directory of this test's own.
		code, _, stderr := cli("apply", "--socket-dir", dir, "-f", spec)
		Expect(code).To(Equal(0), stderr)
		Expect(filepath.Join(dir, project+"_"+obsLB+".admin.sock")).To(BeAnExistingFile())
		incusOK("stop", "--force", obsLB)
		Expect(os.RemoveAll(dir)).To(Succeed())
		restartIncusd()
		_, err := incus("start", obsLB)
		Expect(err).To(HaveOccurred(), "Incus cannot start an instance whose proxy device cannot bind")
		code, _, stderr = cli("apply", "--socket-dir", dir, "-f", spec)
		Expect(code).To(Equal(0), stderr)
		Eventually(obsGet, checkWindow, 200*time.Millisecond).Should(Equal(200))
		Expect(filepath.Join(dir, project+"_"+obsLB+".admin.sock")).To(BeAnExistingFile())
	})

	It("7. under run, an LB whose sockets were wiped, then stopped across an incusd restart, serves again", func() {
		dir := "/run/incuslb-e2e-run-" + project
		defer os.RemoveAll(dir)
		specDir := filepath.Join(workDir, "obs-run-wipe")
		Expect(os.MkdirAll(specDir, 0o755)).To(Succeed())
		data, err := os.ReadFile(spec)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.WriteFile(filepath.Join(specDir, "obs.yaml"), data, 0o644)).To(Succeed())
		ctl := startControllerArgs("run", "--spec", specDir, "--resync", "5s", "--socket-dir", dir)
		defer ctl.stop()
		DeferCleanup(func() {
			if CurrentSpecReport().Failed() {
				GinkgoWriter.Println("===== incuslb run log =====\n", ctl.log.String())
			}
		})
		sock := filepath.Join(dir, project+"_"+obsLB+".admin.sock")
		Eventually(ctl.ready, applySettles, 250*time.Millisecond).Should(BeTrue())
		Eventually(func() error { _, err := obsRuntimeIn(dir).ShowProc(context.Background()); return err }, applySettles, 250*time.Millisecond).Should(Succeed())

		Expect(os.RemoveAll(dir)).To(Succeed()) // /run wiped under a running LB
		restartIncusd()
		incusOK("stop", "--force", obsLB)
		Eventually(obsGet, applySettles, 250*time.Millisecond).Should(Equal(200))
		Eventually(func() error { _, err := obsRuntimeIn(dir).ShowProc(context.Background()); return err }, applySettles, 250*time.Millisecond).Should(Succeed())
		Expect(sock).To(BeAnExistingFile())
		Expect(ctl.stop()).To(Equal(0))
	})
})

func obsReloads() int {
	GinkgoHelper()
	return reloadCount(obsRuntime())
}
