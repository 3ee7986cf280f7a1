package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/incuslb/incuslb/specs"
)

// addCertRootFlag is --cert-root, the directory certificate files must
// resolve under.
func addCertRootFlag(fs *flag.FlagSet, def string) *string {
	return fs.String("cert-root", def, "certificate files are read only from under this directory (default: the spec file's directory; "+
		"symlinks that leave it are refused)")
}

// certRoot is the --cert-root to use for specPath: the flag when given,
// else the spec's directory (the current one for stdin). Absolute.
func certRoot(flagValue, specPath string) (string, error) {
	root := flagValue
	switch {
	case root != "":
	case specPath == "-" || specPath == "":
		root = "."
	default:
		root = specPath
		if st, err := os.Stat(specPath); err != nil || !st.IsDir() {
			root = filepath.Dir(specPath)
		}
	}
	return filepath.Abs(root)
}

// loadSpecs reads, defaults and validates the LoadBalancers in path.
// withFiles also checks the certificate files the specs name, which must
// be under root.
func (e *env) loadSpecs(path string, withFiles bool, root string) ([]*specs.LoadBalancer, error) {
	if path == "" {
		return nil, usageErrorf("-f FILE|DIR|- is required")
	}
	if path != "-" {
		// Relative certificate paths are joined to the spec's directory:
		// make it absolute, so that they resolve the same under the root.
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		path = abs
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
			problems = append(problems, specs.ValidateFilesUnder(lb, root)...)
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
	rootFlag := addCertRootFlag(fs, "")
	if err := parse(fs, args); err != nil {
		return err
	}
	root, err := certRoot(*rootFlag, *file)
	if err != nil {
		return err
	}
	lbs, err := e.loadSpecs(*file, !*skipFiles, root)
	if err != nil {
		return err
	}
	for _, lb := range lbs {
		fmt.Fprintf(e.stdout, "%s: LoadBalancer %q is valid\n", lb.Source, lb.Metadata.Name)
	}
	return nil
}

// addStateDirFlag is --state-dir, where incuslb keeps what it must find
// again: ACME accounts and certificates, placeholder certificates.
func addStateDirFlag(fs *flag.FlagSet) *string {
	return fs.String("state-dir", "/var/lib/incuslb", "where ACME accounts and certificates and the placeholder certificates are kept (0700)")
}
