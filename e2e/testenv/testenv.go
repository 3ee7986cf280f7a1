// Package testenv holds what the e2e suite and the benchmark harness both
// need to look at their containers through the incus CLI.
package testenv

import (
	"encoding/json"
	"os/exec"
)

// IPv4 is an instance's global IPv4 address on eth0, or "" (not running,
// no address yet, or the CLI failed).
func IPv4(project, name string) string {
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
			if a.Family == "inet" && a.Scope == "global" {
				return a.Address
			}
		}
	}
	return ""
}
