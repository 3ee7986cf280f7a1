package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

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
// or the certificate files they name, change. It is the one owner of the
// specs: only the Runner's store loop changes it (SetSource, Reload).
//
// What it reads is untrusted (a spec repository anyone with push access
// writes): spec files are read only when regular and at most
// specs.MaxSpecFile bytes, certificates only from under CertRoot, and a
// file that cannot be read marks only the LoadBalancers it held invalid.
type Store struct {
	Path string
	// CertRoot is the directory certificate files must resolve under
	// (--cert-root). Default: Path's directory.
	CertRoot string
	// Now is the clock orphans are timed with; nil means time.Now.
	Now func() time.Time

	mu         sync.Mutex
	revision   string                         // git commit of Path, when it comes from git
	orphans    map[string]*specs.LoadBalancer // removed from the specs, by name: their instances stay
	orphanedAt map[string]time.Time           // when each orphan was removed from the specs
	specs      map[string]Spec
	files      map[string][]string // file -> names it held last time
	docs       map[docKey][]string // (file, document) -> names it held last time
	version    string              // hash of every file read, to skip unchanged reloads
	skipped    specs.ErrorList     // files the source left out (a git export's symlinks)
	parsed     map[string]parsedFile
}

// parsedFile is a spec file as last parsed, kept so that a file whose
// content did not change is not parsed again.
type parsedFile struct {
	sum  [32]byte
	lbs  []*specs.LoadBalancer // defaulted
	errs specs.ErrorList
}

// docKey is one document of one file; doc is FieldError.Doc.
type docKey struct {
	file string
	doc  int
}

// SetSource points the store at another directory (a new git commit's
// export); the next Reload reads it. skipped are the files the export left
// out (symbolic links, special or oversized files): the LoadBalancers they
// held are reported invalid with the reason, not taken as removed.
func (s *Store) SetSource(path, revision string, skipped specs.ErrorList) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Path, s.revision, s.skipped = path, revision, skipped
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

// OrphanedSince returns when the LoadBalancer called name was removed from
// the specs, if it is an orphan. An orphan that comes back is no longer one.
func (s *Store) OrphanedSince(name string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.orphanedAt[name]
	return t, ok
}

// Counts returns how many LoadBalancers the specs hold, valid and invalid,
// and how many orphans the store knows.
func (s *Store) Counts() (valid, invalid, orphans int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sp := range s.specs {
		if sp.Err == nil {
			valid++
		} else {
			invalid++
		}
	}
	return valid, invalid, len(s.orphans)
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
// changed, appeared or disappeared. A bad document makes only its own
// LoadBalancer invalid, with its errors: the other documents of its file,
// and other files, are unaffected. The error returned lists every document
// that did not parse.
func (s *Store) Reload() ([]string, error) {
	s.mu.Lock()
	path, revision, root, skipped := s.Path, s.revision, s.CertRoot, s.skipped
	cache := s.parsed
	s.mu.Unlock()
	if root == "" {
		root = specRoot(path)
	}
	files, bad, err := specs.ListFiles(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	fmt.Fprintf(sum, "%s\x00", revision)
	var all []*specs.LoadBalancer
	parseErrs := append(slices.Clone(skipped), bad...)
	for _, e := range parseErrs {
		fmt.Fprintf(sum, "%s\x00", e.Error())
	}
	certs := map[*specs.LoadBalancer]certRead{}
	nextCache := map[string]parsedFile{}
	for _, f := range files {
		data, err := specs.ReadRegularFile(f, specs.MaxSpecFile)
		if err != nil {
			parseErrs = append(parseErrs, specs.FieldError{Source: f, Reason: err.Error()})
			fmt.Fprintf(sum, "%s\x00%s\x00", f, err)
			continue
		}
		h := sha256.Sum256(data)
		fmt.Fprintf(sum, "%s\x00%x\x00", f, h)
		pf, ok := cache[f]
		if !ok || pf.sum != h {
			pf = parsedFile{sum: h}
			pf.lbs, pf.errs = specs.ParseEach(data, f)
			for _, lb := range pf.lbs {
				specs.SetDefaults(lb)
			}
		}
		nextCache[f] = pf
		parseErrs = append(parseErrs, pf.errs...)
		for _, cached := range pf.lbs {
			lb := *cached // the cached object is shared: set this read's revision on a copy
			lb.Revision = revision
			if t := lb.Spec.Frontend.TLS; t != nil {
				c := certRead{}
				c.pems, c.err = specs.LoadCertificates(t, func(path string) ([]byte, error) { return specs.LoadCertificateUnder(root, path) })
				for i, f := range t.CertificateFiles() {
					var pem []byte
					if i < len(c.pems) {
						pem = c.pems[i]
					}
					fmt.Fprintf(sum, "%s\x00%x\x00", f, sha256.Sum256(pem))
				}
				fmt.Fprintf(sum, "%v\x00", c.err)
				certs[&lb] = c
			}
			if files, errs := specs.LoadBackendFiles(&lb,
				func(path string) ([]byte, error) { return specs.LoadCertificateUnder(root, path) },
				func(path string) ([]byte, error) { return specs.LoadCABundleUnder(root, path) }); len(files)+len(errs) > 0 {
				c := certs[&lb]
				for _, f := range files {
					c.backend = append(c.backend, f.PEM)
					fmt.Fprintf(sum, "%s\x00%x\x00", f.Field, sha256.Sum256(f.PEM))
				}
				c.backendErr = errs
				fmt.Fprintf(sum, "%v\x00", errs)
				certs[&lb] = c
			}
			all = append(all, &lb)
		}
	}
	version := hex.EncodeToString(sum.Sum(nil))

	s.mu.Lock()
	defer s.mu.Unlock()
	s.parsed = nextCache
	if version == s.version {
		return nil, nil
	}
	s.version = version
	files2 := map[string][]string{}
	docs2 := map[docKey][]string{}
	held := func(f string, doc int, name string) {
		f = s.key(f)
		if !slices.Contains(files2[f], name) {
			files2[f] = append(files2[f], name)
		}
		if k := (docKey{f, doc}); !slices.Contains(docs2[k], name) {
			docs2[k] = append(docs2[k], name)
		}
	}
	good := map[string]bool{} // file + "\x00" + name, for the good documents
	for _, lb := range all {
		held(lb.Source, lb.Doc, lb.Metadata.Name)
		good[lb.Source+"\x00"+lb.Metadata.Name] = true
	}
	// Every problem goes to the LoadBalancer it names: problems within one
	// object and across objects (ValidateSet puts those on the later one).
	problems := map[string]specs.ErrorList{}
	for _, e := range specs.ValidateSet(all) {
		problems[e.LB] = append(problems[e.LB], e)
	}
	for _, e := range parseErrs {
		for _, name := range s.owners(e, good) {
			problems[name] = append(problems[name], e)
			held(e.Source, e.Doc, name)
		}
	}

	next := map[string]Spec{}
	for _, lb := range all {
		name := lb.Metadata.Name
		if _, dup := next[name]; dup {
			continue // the name is invalid (ValidateSet); keep the first spec
		}
		errs := slices.Clone(problems[name])
		c := certs[lb]
		if c.err != nil {
			errs = append(errs, specs.FieldError{Source: lb.Source, Doc: lb.Doc, LB: name,
				Path: c.err.Path, Reason: c.err.Reason})
		}
		errs = append(errs, c.backendErr...)
		sp := Spec{Name: name, LB: lb}
		var pems [][]byte
		if len(errs) > 0 {
			sp.Err = errs
		} else {
			pems = append(slices.Clone(c.pems), c.backend...)
		}
		sp.Hash = SpecHash(lb, pems)
		if sp.Err != nil {
			sp.Hash += "/" + sp.Err.Error()
		}
		next[name] = sp
	}
	// A bad document with no good one of the same name: invalid, no spec.
	for name, errs := range problems {
		if _, ok := next[name]; !ok && name != "" {
			next[name] = Spec{Name: name, Err: errs, Hash: "invalid/" + errs.Error()}
		}
	}

	var changed []string
	for name, sp := range next {
		if old, ok := s.specs[name]; !ok || old.Hash != sp.Hash || (sp.LB != nil && old.LB != nil && old.LB.Revision != sp.LB.Revision) {
			changed = append(changed, name)
		}
	}
	if s.orphans == nil {
		s.orphans = map[string]*specs.LoadBalancer{}
		s.orphanedAt = map[string]time.Time{}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	for name, old := range s.specs {
		if _, ok := next[name]; !ok {
			changed = append(changed, name)
			if old.LB != nil {
				s.orphans[name] = old.LB
				s.orphanedAt[name] = now()
			}
		}
	}
	for name := range next {
		delete(s.orphans, name)
		delete(s.orphanedAt, name)
	}
	s.specs, s.files, s.docs = next, files2, docs2
	sort.Strings(changed)
	if len(parseErrs) > 0 {
		return changed, parseErrs
	}
	return changed, nil
}

// owners returns the LoadBalancers a parse problem belongs to: the one it
// names; or, for a document whose name cannot be read, the names that
// document held last time; or else every name its file held last time. A
// name held by a good document of the file this time is never among them.
func (s *Store) owners(e specs.FieldError, good map[string]bool) []string {
	if e.LB != "" {
		return []string{e.LB}
	}
	notGood := func(names []string) []string {
		var out []string
		for _, name := range names {
			if !good[e.Source+"\x00"+name] {
				out = append(out, name)
			}
		}
		return out
	}
	if names := notGood(s.docs[docKey{s.key(e.Source), e.Doc}]); len(names) > 0 {
		return names
	}
	return notGood(s.files[s.key(e.Source)])
}

// certRead is the certificates of a LoadBalancer as the store read them.
type certRead struct {
	pems [][]byte
	err  *specs.FieldError
	// backend are the pools' backendTLS files (in the spec's hash, so
	// that a rotated file is a changed spec), and their problems.
	backend    [][]byte
	backendErr specs.ErrorList
}

// specRoot is the directory of a spec path: itself when it is a directory.
func specRoot(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return path
	}
	return filepath.Dir(path)
}

// key names a spec file relative to the source, so that the same file in
// the exports of two commits is the same file.
func (s *Store) key(file string) string {
	if rel, err := filepath.Rel(s.Path, file); err == nil && filepath.IsLocal(rel) {
		return rel
	}
	return file
}

func sortedNames(m map[string]Spec) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
