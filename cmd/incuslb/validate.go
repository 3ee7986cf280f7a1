package main

import (
	"fmt"

	"github.com/incuslb/incuslb/specs"
)

// loadSpecs reads, defaults and validates the LoadBalancers in path.
// withFiles also checks the certificate files the specs name.
func (e *env) loadSpecs(path string, withFiles bool) ([]*specs.LoadBalancer, error) {
	if path == "" {
		return nil, usageErrorf("-f FILE|DIR|- is required")
	}
	lbs, err := specs.Load(path, e.stdin)
	if err != nil {
		return nil, err
	}
	for _, lb := range lbs {
		specs.SetDefaults(lb)
	}
	problems := specs.ValidateSet(lbs)
	if withFiles {
		for _, lb := range lbs {
			problems = append(problems, specs.ValidateFiles(lb)...)
		}
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return lbs, nil
}

func (e *env) validate(args []string) error {
	fs := e.newFlags("validate", "validate -f FILE|DIR|- [--skip-files]")
	file := fs.String("f", "", "spec file, directory of specs, or - for stdin")
	skipFiles := fs.Bool("skip-files", false, "do not read the certificate files the specs name (e.g. on a CI runner)")
	if err := parse(fs, args); err != nil {
		return err
	}
	lbs, err := e.loadSpecs(*file, !*skipFiles)
	if err != nil {
		return err
	}
	for _, lb := range lbs {
		fmt.Fprintf(e.stdout, "%s: LoadBalancer %q is valid\n", lb.Source, lb.Metadata.Name)
	}
	return nil
}
