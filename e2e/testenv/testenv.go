// Package testenv holds what the e2e suite and the benchmark harness both
// need to look at their containers through the incus CLI.
package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// IPv4 is an instance's global IPv4 address on eth0, or "" (not running,
// no address yet, or the CLI failed).
func IPv4(project, name string) string { return address(project, name, "inet") }

// IPv6 is an instance's global IPv6 address on eth0, or "".
func IPv6(project, name string) string { return address(project, name, "inet6") }

// address is an instance's first global address of family on eth0.
func address(project, name, family string) string {
	out, err := exec.Command("incus", "--project", project, "list", name, "--format", "json").Output()
	if err != nil {
		return ""
	}
	var insts []struct {
		Name  string
		State struct {
			Network map[string]struct {
				Addresses []struct{ Family, Address, Scope string }
			}
		}
	}
	if json.Unmarshal(out, &insts) != nil {
		return ""
	}
	for _, i := range insts {
		if i.Name != name {
			continue
		}
		for _, a := range i.State.Network["eth0"].Addresses {
			if a.Family == family && a.Scope == "global" {
				return a.Address
			}
		}
	}
	return ""
}

// InstallTestserver installs the testserver binary in a running container
// as a systemd unit running execStart, and returns once the unit is active.
// Early in a container's boot a step can fail (systemd not up yet), so the
// steps are retried, ten times a second apart. unitDir is a host directory
// for the unit file.
func InstallTestserver(project, name, binary, unitDir, execStart string) error {
	unit := filepath.Join(unitDir, name+".service")
	body := fmt.Sprintf("[Unit]\nDescription=incuslb test server\nAfter=network.target\n\n[Service]\nExecStart=%s\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n", execStart)
	if err := os.WriteFile(unit, []byte(body), 0o644); err != nil {
		return err
	}
	run := func(args ...string) error {
		out, err := exec.Command("incus", append([]string{"--project", project}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("incus %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	var err error
	for try := 0; try < 10; try++ {
		if try > 0 {
			time.Sleep(time.Second)
		}
		if run("exec", name, "--", "systemctl", "is-active", "--quiet", "testserver") == nil {
			return nil
		}
		_ = run("exec", name, "--", "systemctl", "is-system-running", "--wait")
		// Step by step, stopping at the first failure; the binary goes in
		// under another name and is renamed, which works even while an
		// earlier try's service runs it.
		for _, args := range [][]string{
			{"--quiet", "file", "push", "--uid", "0", "--gid", "0", "--mode", "0755", binary, name + "/usr/local/bin/testserver.new"},
			{"exec", name, "--", "mv", "-f", "/usr/local/bin/testserver.new", "/usr/local/bin/testserver"},
			{"--quiet", "file", "push", "--uid", "0", "--gid", "0", "--mode", "0644", unit, name + "/etc/systemd/system/testserver.service"},
			{"exec", name, "--", "systemctl", "daemon-reload"},
			{"exec", name, "--", "systemctl", "enable", "--now", "testserver"},
			{"exec", name, "--", "systemctl", "is-active", "--quiet", "testserver"},
		} {
			if err = run(args...); err != nil {
				break
			}
		}
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("testserver in %s: %w", name, err)
}
