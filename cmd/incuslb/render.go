package main

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

func (e *env) render(args []string) error {
	fs := e.newFlags("render", "render -f FILE [--members FILE] [--name LB]")
	file := fs.String("f", "", "spec file, directory of specs, or - for stdin")
	membersFile := fs.String("members", "", "YAML/JSON file of pool name -> [{name, address, port}], to render without Incus")
	name := fs.String("name", "", "which LoadBalancer to render when the input holds several")
	if err := parse(fs, args); err != nil {
		return err
	}
	// The certificate is not read: render shows the config, it pushes nothing.
	lbs, err := e.loadSpecs(*file, false, "")
	if err != nil {
		return err
	}
	lb, err := pick(lbs, *name)
	if err != nil {
		return err
	}
	members := map[string][]haproxy.Member{}
	if *membersFile != "" {
		data, err := os.ReadFile(*membersFile)
		if err != nil {
			return err
		}
		if err := yaml.UnmarshalStrict(data, &members); err != nil {
			return fmt.Errorf("%s: %v", *membersFile, err)
		}
		if err := checkMembers(lb, members); err != nil {
			return fmt.Errorf("%s: %w", *membersFile, err)
		}
	}
	layout := haproxy.Assign(lb, members, nil)
	_, err = e.stdout.Write(haproxy.Render(lb, layout, haproxy.Options{}))
	return err
}

// pick returns the LoadBalancer called name, or the only one.
func pick(lbs []*specs.LoadBalancer, name string) (*specs.LoadBalancer, error) {
	if name == "" {
		if len(lbs) == 1 {
			return lbs[0], nil
		}
		return nil, usageErrorf("the input holds %d LoadBalancers: choose one with --name", len(lbs))
	}
	for _, lb := range lbs {
		if lb.Metadata.Name == name {
			return lb, nil
		}
	}
	return nil, usageErrorf("no LoadBalancer named %q", name)
}

// checkMembers rejects members of unknown or static pools and addresses that
// are not plain IPv4 or IPv6 addresses, so that a members file cannot inject
// config either.
func checkMembers(lb *specs.LoadBalancer, members map[string][]haproxy.Member) error {
	selector := map[string]bool{}
	for _, p := range lb.Spec.Pools {
		selector[p.Name] = len(p.Selector) > 0
	}
	var problems specs.ErrorList
	for pool, ms := range members {
		if !selector[pool] {
			problems = append(problems, specs.FieldError{Path: pool, Reason: "is not a selector pool of LoadBalancer " + lb.Metadata.Name})
			continue
		}
		for i, m := range ms {
			if err := haproxy.CheckMember(m); err != nil {
				problems = append(problems, specs.FieldError{Path: fmt.Sprintf("%s[%d]", pool, i), Reason: err.Error()})
			}
		}
	}
	if len(problems) > 0 {
		return problems
	}
	return nil
}
