//go:build cluster

// Package cluster is the e2e suite on a real 3-member Incus cluster, the
// nested one hack/cluster.sh brings up on this machine (make
// e2e-cluster): an LB pair spread over two members, backends on all
// three, hard-killed and returning members, and one leader among
// controllers that run on the members themselves.
package cluster

import (
	"bytes"
	"context"
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
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/incuslb/incuslb/e2e/testenv"
)

const (
	hostProject = "incuslb-nest" // where the members live on the host
	settles     = 3 * time.Minute
)

// remote is how the suite reaches the cluster: through nest-m3, the
// member the pair's replicas do not go on (placement takes the first
// members by name), so that killing a replica's member leaves the suite
// and its controller an API to talk to. (hack/cluster.sh's own remote,
// nest1, is nest-m1.)
const remote = "nest3"

var members = []string{"nest-m1", "nest-m2", "nest-m3"}

var (
	workDir, bin, server, suffix string
	cliLog                       testenv.LockedBuffer
)

func TestCluster(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "incuslb e2e on a real 3-member Incus cluster")
}

var _ = BeforeSuite(func() {
	root, err := filepath.Abs("../..")
	Expect(err).NotTo(HaveOccurred())
	if os.Getenv("INCUS_CONF") == "" {
		Expect(os.Setenv("INCUS_CONF", filepath.Join(root, ".cache/nest/incus-conf"))).To(Succeed())
	}
	out, err := exec.Command("incus", "cluster", "list", "nest1:", "-f", "csv", "-c", "nu").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "no cluster at remote nest1 (run make cluster-env): %s", out)
	if exec.Command("incus", "info", remote+":").Run() != nil {
		for _, l := range strings.Split(string(out), "\n") {
			if name, url, ok := strings.Cut(l, ","); ok && name == "nest-m3" {
				// The client certificate is trusted by the whole cluster.
				_ = exec.Command("incus", "remote", "remove", remote).Run()
				Expect(exec.Command("incus", "remote", "add", remote, url, "--accept-certificate").CombinedOutput()).Error().NotTo(HaveOccurred())
			}
		}
	}
	out, err = exec.Command("incus", "cluster", "list", remote+":", "-f", "csv", "-c", "ns").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "no cluster at remote %s: %s", remote, out)
	Expect(strings.Count(string(out), "ONLINE")).To(Equal(3), "members: %s", out)
	workDir, err = os.MkdirTemp("", "incuslb-cluster-")
	Expect(err).NotTo(HaveOccurred())
	bin, server = filepath.Join(workDir, "incuslb"), filepath.Join(workDir, "testserver")
	for _, b := range [][]string{{bin, "./cmd/incuslb"}, {server, "./e2e/testserver"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		Expect(cmd.CombinedOutput()).Error().NotTo(HaveOccurred())
	}
	var s [3]byte
	_, _ = rand.Read(s[:])
	suffix = hex.EncodeToString(s[:])
	removeOurs()
})

var _ = AfterSuite(func() {
	// Members this suite stopped or froze come back first, and the cluster
	// sees them again, so that their instances can be deleted.
	for _, m := range members {
		_, _ = host("start", m)
		_, _ = host("resume", m)
	}
	Eventually(func() int {
		out, _ := nest("cluster", "list", remote+":", "-f", "csv", "-c", "ns")
		return strings.Count(out, "ONLINE")
	}, settles, time.Second).Should(Equal(3))
	removeOurs()
	_, _ = nest("profile", "delete", remote+":"+leaseName())
	if workDir != "" {
		_ = os.RemoveAll(workDir)
	}
})

// removeOurs deletes the suite's instances (named c-*), this run's or an
// interrupted one's.
func removeOurs() {
	out, _ := exec.Command("incus", "list", remote+":", "-f", "json").Output()
	var insts []struct{ Name string }
	_ = json.Unmarshal(out, &insts)
	for _, i := range insts {
		if strings.HasPrefix(i.Name, "c-") {
			_, _ = nest("delete", "--force", remote+":"+i.Name)
		}
	}
}

func leaseName() string { return "incuslb-lease-cluster-" + suffix }

// nest runs the incus CLI against the cluster (names carry "nest1:").
func nest(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "incus", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("incus %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func nestOK(args ...string) string {
	GinkgoHelper()
	out, err := nest(args...)
	Expect(err).NotTo(HaveOccurred())
	return out
}

// host runs the incus CLI on the host's own Incus, in the members' project.
func host(args ...string) (string, error) {
	return nest(append([]string{"--project", hostProject}, args...)...)
}

// backend launches a testserver on a member.
func backend(name, member string) {
	GinkgoHelper()
	nestOK("launch", remote+":lb-haproxy", remote+":"+name, "--target", member, "-c", "user.role=capi")
	Expect(testenv.InstallTestserver("default", remote+":"+name, server, workDir, "/usr/local/bin/testserver")).To(Succeed())
}

// instance is what the cluster says of an instance.
type instance struct {
	Name, Status, Location string
	Addresses              []string
}

func lookup(name string) instance {
	out, err := nest("list", remote+":"+name, "-f", "json")
	if err != nil {
		return instance{}
	}
	var insts []struct {
		Name, Status, Location string
		State                  struct {
			Network map[string]struct {
				Addresses []struct{ Family, Address string }
			}
		}
	}
	_ = json.Unmarshal([]byte(out), &insts)
	for _, i := range insts {
		if i.Name != name {
			continue
		}
		r := instance{Name: i.Name, Status: i.Status, Location: i.Location}
		for _, a := range i.State.Network["eth0"].Addresses {
			if a.Family == "inet" {
				r.Addresses = append(r.Addresses, a.Address)
			}
		}
		return r
	}
	return instance{}
}

// controller is an incuslb run on the host against the cluster.
type controller struct {
	*testenv.Process
	log  *testenv.LockedBuffer
	addr string // its --listen address
}

// stacks is the controller's goroutines that are in incuslb's code (from
// --pprof), to say where a slow pass waits.
func (c *controller) stacks() string {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.addr + "/debug/pprof/goroutine?debug=2")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(io.LimitReader(resp.Body, 8<<20))
	var keep []string
	for _, g := range strings.Split(b.String(), "\n\n") {
		if strings.Contains(g, "incuslb/controller") && !strings.Contains(g, "MemberWatch") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

func startController(args ...string) *controller {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	addr := ln.Addr().String()
	ln.Close()
	c := &controller{log: &testenv.LockedBuffer{}, addr: addr}
	cmd := exec.Command(bin, append(args, "--remote", remote, "--listen", addr, "--pprof", "--lease", leaseName())...)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	c.Process, err = testenv.Start(cmd)
	Expect(err).NotTo(HaveOccurred())
	return c
}

func cli(args ...string) (int, string) {
	cmd := exec.Command(bin, append(args, "--remote", remote)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	fmt.Fprintf(&cliLog, "$ incuslb %s\n%s", strings.Join(args, " "), out.String())
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String()
	}
	return 0, out.String()
}

func serves(url string) bool {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
