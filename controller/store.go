package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"sync"

	"github.com/incuslb/incuslb/specs"
)

// Spec is one LoadBalancer as read from the spec files: valid (LB set), or
// invalid (Err set, with LB when it could still be parsed).
type Spec struct {
	Name string
	LB   *specs.LoadBalancer
	Err  error
	Hash string // changes whenever the spec, its certificate or its error does
}

// Store holds the LoadBalancers of a spec path and notices when its files,
// or the certificate files they name, change.
type Store struct {
	Path string

	mu       sync.Mutex
	revision string                         // git commit of Path, when it comes from git
	orphans  map[string]*specs.LoadBalancer // removed from the specs, by name: their instances stay
	specs    map[string]Spec
	files    map[string][]string // file -> names it held last time it parsed
	version  string              // hash of every file read, to skip unchanged reloads
}

// SetSource points the store at another directory (a new git commit's
// export); the next Reload reads it.
func (s *Store) SetSource(path, revision string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Path, s.revision = path, revision
}

// Revision is the git commit the specs were last read at ("" without git).
func (s *Store) Revision() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revision
}

// Orphan returns the last spec of a LoadBalancer that is no longer in the
// specs.
func (s *Store) Orphan(name string) (*specs.LoadBalancer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lb, ok := s.orphans[name]
	return lb, ok
}

// Get returns the spec called name.
func (s *Store) Get(name string) (Spec, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sp, ok := s.specs[name]
	return sp, ok
}

// Valid returns the valid LoadBalancers, by name.
func (s *Store) Valid() []*specs.LoadBalancer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*specs.LoadBalancer
	for _, name := range sortedNames(s.specs) {
		if sp := s.specs[name]; sp.Err == nil {
			out = append(out, sp.LB)
		}
	}
	return out
}

// Names returns every name, valid or not.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedNames(s.specs)
}

// Reload reads the spec path again and returns the names whose spec
// changed, appeared or disappeared. A file that no longer parses makes the
// LoadBalancers it held invalid, with its errors; other files are
// unaffected.
func (s *Store) Reload() ([]string, error) {
	s.mu.Lock()
	path, revision := s.Path, s.revision
	s.mu.Unlock()
	files, err := specs.Files(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00", revision)
	parsed := map[string][]*specs.LoadBalancer{}
	fileErr := map[string]error{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(sum, "%s\x00%x\x00", f, sha256.Sum256(data))
		lbs, err := specs.Parse(data, f)
		if err != nil {
			fileErr[f] = err
			continue
		}
		for _, lb := range lbs {
			lb.Revision = revision
			specs.SetDefaults(lb)
			if t := lb.Spec.Frontend.TLS; t != nil {
				if cert, err := os.ReadFile(t.CertificateFile); err == nil {
					fmt.Fprintf(sum, "%s\x00%x\x00", t.CertificateFile, sha256.Sum256(cert))
				}
			}
		}
		parsed[f] = lbs
	}
	version := hex.EncodeToString(sum.Sum(nil))

	s.mu.Lock()
	defer s.mu.Unlock()
	if version == s.version {
		return nil, nil
	}
	s.version = version
	next := map[string]Spec{}
	var all []*specs.LoadBalancer
	for _, f := range files {
		all = append(all, parsed[f]...)
	}
	// Problems across files (a name or an instance used twice) and within.
	problems := map[string]specs.ErrorList{}
	for _, e := range specs.ValidateSet(all) {
		for _, lb := range all {
			if lb.Source == e.Source {
				problems[lb.Metadata.Name] = append(problems[lb.Metadata.Name], e)
			}
		}
	}
	for _, lb := range all {
		name := lb.Metadata.Name
		errs := problems[name]
		errs = append(errs, specs.ValidateFiles(lb)...)
		sp := Spec{Name: name, LB: lb}
		var cert []byte
		if len(errs) > 0 {
			sp.Err = errs
		} else if t := lb.Spec.Frontend.TLS; t != nil {
			cert, _ = os.ReadFile(t.CertificateFile)
		}
		sp.Hash = SpecHash(lb, cert)
		if sp.Err != nil {
			sp.Hash += "/" + sp.Err.Error()
		}
		next[name] = sp
	}
	files2 := map[string][]string{}
	for f, lbs := range parsed {
		for _, lb := range lbs {
			files2[f] = append(files2[f], lb.Metadata.Name)
		}
	}
	// A file that no longer parses: the names it held are invalid now.
	for f, err := range fileErr {
		for _, name := range s.files[f] {
			if _, ok := next[name]; !ok {
				next[name] = Spec{Name: name, Err: err, Hash: "invalid/" + err.Error()}
			}
		}
		files2[f] = s.files[f]
	}
	var changed []string
	for name, sp := range next {
		if old, ok := s.specs[name]; !ok || old.Hash != sp.Hash || (sp.LB != nil && old.LB != nil && old.LB.Revision != sp.LB.Revision) {
			changed = append(changed, name)
		}
	}
	if s.orphans == nil {
		s.orphans = map[string]*specs.LoadBalancer{}
	}
	for name, old := range s.specs {
		if _, ok := next[name]; !ok {
			changed = append(changed, name)
			if old.LB != nil {
				s.orphans[name] = old.LB
			}
		}
	}
	for name := range next {
		delete(s.orphans, name)
	}
	s.specs, s.files = next, files2
	sort.Strings(changed)
	var firstErr error
	for _, f := range files {
		if err := fileErr[f]; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return changed, firstErr
}

func sortedNames(m map[string]Spec) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
