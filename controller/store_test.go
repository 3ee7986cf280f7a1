package controller

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/specs"
)

const storeSpec = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: NAME}
spec:
  instance: {name: lb}
  routes: [{pool: api}]
  pools: [{name: api, selector: {user.role: api}, port: 8080}]
`

// deleteCountingIncus records DeleteInstance calls.
type deleteCountingIncus struct {
	*fakeIncus
	deleted []string
}

func (d *deleteCountingIncus) DeleteInstance(_ context.Context, project, name string) error {
	d.deleted = append(d.deleted, project+"/"+name)
	return nil
}

func TestStoreReportsChangesAndOrphans(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("edge.yaml", strings.Replace(storeSpec, "NAME", "edge", 1))
	clock := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	s := &Store{Path: dir, Now: now}
	changed, err := s.Reload()
	if err != nil || len(changed) != 1 || changed[0] != "edge" {
		t.Fatalf("first reload: %v %v", changed, err)
	}
	if changed, _ := s.Reload(); len(changed) != 0 {
		t.Fatalf("an unchanged reload reported %v", changed)
	}
	// A broken file makes its LB invalid, not missing.
	write("edge.yaml", "apiVersion: incuslb/v1alpha1\nkind: LoadBalancer\nmetadata: {name: edge\n")
	changed, err = s.Reload()
	if err == nil || len(changed) != 1 {
		t.Fatalf("broken file: %v %v", changed, err)
	}
	if sp, _ := s.Get("edge"); sp.Err == nil {
		t.Fatal("the LB of a broken file is not marked invalid")
	}
	// Removed: an orphan, reconciled by marking its instance (or deleting it with Prune).
	write("edge.yaml", strings.Replace(storeSpec, "NAME", "edge", 1))
	s.Reload()
	os.Remove(filepath.Join(dir, "edge.yaml"))
	write("other.yaml", strings.Replace(strings.Replace(storeSpec, "NAME", "other", 1), "{name: lb}", "{name: lb2}", 1))
	changed, _ = s.Reload()
	if _, ok := s.Orphan("edge"); !ok || len(changed) != 2 {
		t.Fatalf("removal: changed %v, orphan known %v", changed, ok)
	}
	f := &deleteCountingIncus{fakeIncus: newFake()}
	r := &LBReconciler{Store: s, Applier: &Applier{Incus: f, Log: logr.Discard(), Now: now}, Log: logr.Discard()}
	if _, err := r.Reconcile(context.Background(), Request{Name: "edge"}); err != nil {
		t.Fatal(err)
	}
	st := StatusFromConfig(f.inst.Config)
	if c := st.Condition(ConditionOrphaned); c == nil || c.Status != "True" || len(f.deleted) != 0 {
		t.Fatalf("orphan not marked, or deleted without --prune: %+v %v", st.Conditions, f.deleted)
	}
	// With Prune, deleted only once it has been gone for the grace period.
	r.Prune = true
	clock = clock.Add(5 * time.Minute)
	if res, err := r.Reconcile(context.Background(), Request{Name: "edge"}); err != nil || len(f.deleted) != 0 || res.RequeueAfter != 10*time.Minute {
		t.Fatalf("--prune within the grace period: %v %v %+v", err, f.deleted, res)
	}
	clock = clock.Add(10 * time.Minute)
	if _, err := r.Reconcile(context.Background(), Request{Name: "edge"}); err != nil || len(f.deleted) != 1 || f.deleted[0] != "default/lb" {
		t.Fatalf("--prune: %v %v", err, f.deleted)
	}
}

// specDoc is storeSpec for the LoadBalancer name on the instance inst.
func specDoc(name, inst string) string {
	return strings.Replace(strings.Replace(storeSpec, "NAME", name, 1), "{name: lb}", "{name: "+inst+"}", 1)
}

// specDir is a spec directory; write replaces a file, or removes it when
// body is "".
type specDir string

func (d specDir) write(t *testing.T, name, body string) {
	t.Helper()
	p := filepath.Join(string(d), name)
	if body == "" {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// expectSpecs checks which names are valid and which invalid (with a
// fragment of their error).
func expectSpecs(t *testing.T, s *Store, valid []string, invalid map[string]string) {
	t.Helper()
	if got := s.Names(); len(got) != len(valid)+len(invalid) {
		t.Errorf("names %v, want %v valid and %v invalid", got, valid, invalid)
	}
	for _, name := range valid {
		if sp, ok := s.Get(name); !ok || sp.Err != nil || sp.LB == nil || sp.LB.Metadata.Name != name {
			t.Errorf("%s: not valid: %+v", name, sp)
		}
	}
	for name, frag := range invalid {
		if sp, ok := s.Get(name); !ok || sp.Err == nil || !strings.Contains(sp.Err.Error(), frag) {
			t.Errorf("%s: want invalid with %q, got %+v", name, frag, sp)
		}
	}
}

func TestStoreBadDocumentInvalidatesOnlyItsLoadBalancer(t *testing.T) {
	dir := specDir(t.TempDir())
	good := specDoc("a", "lb-a") + "---\n" + specDoc("mid", "lb-mid") + "---\n" + specDoc("c", "lb-c")
	dir.write(t, "three.yaml", good)
	s := &Store{Path: string(dir)}
	if changed, err := s.Reload(); err != nil || len(changed) != 3 {
		t.Fatalf("first reload: %v %v", changed, err)
	}
	before, _ := s.Get("a")

	// A bad field in the middle document: only mid is invalid.
	dir.write(t, "three.yaml", strings.Replace(good, "{name: lb-mid}", "{name: lb-mid, adpot: true}", 1))
	changed, err := s.Reload()
	if err == nil || len(changed) != 1 || changed[0] != "mid" {
		t.Fatalf("bad field: changed %v, err %v", changed, err)
	}
	expectSpecs(t, s, []string{"a", "c"}, map[string]string{
		"mid": `three.yaml: document 2 (LoadBalancer "mid"): spec.instance.adpot: unknown field`})
	if after, _ := s.Get("a"); after.Hash != before.Hash {
		t.Error("a good document of the same file changed its spec")
	}

	// YAML that does not parse at all, name unreadable: the document's
	// name from last time is invalid, the others stay valid.
	dir.write(t, "three.yaml", strings.Replace(good, "metadata: {name: mid}", "metadata: {name: mid", 1))
	if _, err := s.Reload(); err == nil {
		t.Fatal("unparseable document: no error")
	}
	expectSpecs(t, s, []string{"a", "c"}, map[string]string{"mid": "document 2: not valid YAML"})

	// Still broken on the next change: the store remembers whose it was.
	dir.write(t, "three.yaml", strings.Replace(good, "metadata: {name: mid}", "metadata: {name: mid\n# edited", 1))
	s.Reload()
	expectSpecs(t, s, []string{"a", "c"}, map[string]string{"mid": "not valid YAML"})

	// Fixed: all three valid, and no orphan on the way.
	dir.write(t, "three.yaml", good)
	if changed, err := s.Reload(); err != nil || len(changed) != 1 || changed[0] != "mid" {
		t.Fatalf("fixed: %v %v", changed, err)
	}
	expectSpecs(t, s, []string{"a", "c", "mid"}, nil)
	if _, _, orphans := s.Counts(); orphans != 0 {
		t.Errorf("%d orphans", orphans)
	}
}

func TestStoreUnreadableFileFallsBackToItsNames(t *testing.T) {
	dir := specDir(t.TempDir())
	dir.write(t, "two.yaml", specDoc("ex", "lb-ex")+"---\n"+specDoc("why", "lb-why"))
	dir.write(t, "other.yaml", specDoc("z", "lb-z"))
	s := &Store{Path: string(dir)}
	s.Reload()
	// One unreadable document where there were two: no (file, document)
	// matches, so every name the file held is invalid; other files are not.
	dir.write(t, "two.yaml", "metadata: {name: ex\n")
	if _, err := s.Reload(); err == nil {
		t.Fatal("no error")
	}
	expectSpecs(t, s, []string{"z"}, map[string]string{"ex": "not valid YAML", "why": "not valid YAML"})
	// An unreadable new file belongs to no LoadBalancer: only the error says so.
	dir.write(t, "new.yaml", "metadata: {name: n\n")
	if _, err := s.Reload(); err == nil || !strings.Contains(err.Error(), "new.yaml") {
		t.Fatalf("new unreadable file: %v", err)
	}
	expectSpecs(t, s, []string{"z"}, map[string]string{"ex": "not valid YAML", "why": "not valid YAML"})
}

func TestStoreCrossObjectErrorsGoToTheNamedLoadBalancer(t *testing.T) {
	dir := specDir(t.TempDir())
	dir.write(t, "a.yaml", specDoc("edge", "lb-edge"))
	dir.write(t, "b.yaml", specDoc("edge", "lb-edge2")+"---\n"+specDoc("other", "lb-other"))
	dir.write(t, "c.yaml", specDoc("thief", "lb-other"))
	s := &Store{Path: string(dir)}
	s.Reload()
	// The name used twice is invalid; other, in the same file as the second
	// edge, is not; thief, on other's instance, is.
	expectSpecs(t, s, []string{"other"}, map[string]string{
		"edge":  `document 1 (LoadBalancer "edge"): metadata.name: duplicate LoadBalancer "edge" (also in ` + filepath.Join(string(dir), "a.yaml"),
		"thief": `spec.instance.name: instance default/lb-other is already used by LoadBalancer "other"`,
	})
	if sp, _ := s.Get("other"); sp.Err != nil {
		t.Errorf("other: %v", sp.Err)
	}
	dir.write(t, "b.yaml", specDoc("other", "lb-other"))
	dir.write(t, "c.yaml", "")
	s.Reload()
	expectSpecs(t, s, []string{"edge", "other"}, nil)
}

func TestStoreTimesOrphans(t *testing.T) {
	dir := specDir(t.TempDir())
	dir.write(t, "edge.yaml", specDoc("edge", "lb-edge"))
	dir.write(t, "other.yaml", specDoc("other", "lb-other"))
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	s := &Store{Path: string(dir), Now: func() time.Time { return now }}
	s.Reload()
	if v, i, o := s.Counts(); v != 2 || i != 0 || o != 0 {
		t.Fatalf("counts %d %d %d", v, i, o)
	}
	if _, ok := s.OrphanedSince("edge"); ok {
		t.Fatal("edge is not an orphan")
	}
	dir.write(t, "edge.yaml", "")
	removed := now
	s.Reload()
	now = now.Add(time.Hour)
	dir.write(t, "other.yaml", strings.Replace(specDoc("other", "lb-other"), "8080", "8081", 1))
	s.Reload() // a later reload does not restart the clock
	if at, ok := s.OrphanedSince("edge"); !ok || !at.Equal(removed) {
		t.Fatalf("OrphanedSince = %v %v, want %v", at, ok, removed)
	}
	dir.write(t, "other.yaml", "apiVersion: [\n")
	s.Reload()
	if v, i, o := s.Counts(); v != 0 || i != 1 || o != 1 {
		t.Fatalf("counts %d %d %d", v, i, o)
	}
	// Back in the specs: no longer an orphan.
	dir.write(t, "edge.yaml", specDoc("edge", "lb-edge"))
	s.Reload()
	if _, ok := s.OrphanedSince("edge"); ok {
		t.Fatal("edge came back but is still an orphan")
	}
	if v, i, o := s.Counts(); v != 1 || i != 1 || o != 0 {
		t.Fatalf("counts %d %d %d", v, i, o)
	}
}

// A hostile spec directory: a certificate outside the root, a spec that is
// a symlink to /dev/zero, a FIFO, a 2 MiB file. Each marks only its own
// LoadBalancer invalid (or is reported), reading never hangs, and the
// good LoadBalancer stays valid.
func TestStoreReadsOnlyWhatItMust(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("good.yaml", strings.ReplaceAll(storeSpec, "NAME", "good"))
	outside := strings.ReplaceAll(storeSpec, "NAME", "thief") + "  frontend: {tls: {certificateFile: /etc/ssl/private/ssl-cert-snakeoil.key}}\n"
	write("thief.yaml", strings.Replace(outside, "instance: {name: lb}", "instance: {name: lb2}", 1))
	write("up.yaml", strings.Replace(strings.ReplaceAll(storeSpec, "NAME", "up"), "instance: {name: lb}", "instance: {name: lb3}", 1)+
		"  frontend: {tls: {certificateFile: ../x.pem}}\n")
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "zero.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	write("big.yaml", strings.Repeat("#", 2<<20))
	s := &Store{Path: dir}
	done := make(chan error, 1)
	go func() { _, err := s.Reload(); done <- err }()
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Reload hangs on a hostile spec directory")
	}
	for _, want := range []string{"zero.yaml", "fifo.yaml", "big.yaml"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not report %s: %v", want, err)
		}
	}
	if sp, _ := s.Get("good"); sp.Err != nil {
		t.Fatalf("good is invalid: %v", sp.Err)
	}
	for _, name := range []string{"thief", "up"} {
		sp, ok := s.Get(name)
		if !ok || sp.Err == nil || !strings.Contains(sp.Err.Error(), "outside the certificate root") {
			t.Fatalf("%s: %+v", name, sp)
		}
	}
}

// A spec file a git export left out (a symlink, say) marks the
// LoadBalancers it held invalid, not removed, even though each commit's
// export is a new directory.
func TestStoreSkippedFileOfANewCommitIsInvalidNotOrphaned(t *testing.T) {
	first, second := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(first, "a.yaml"), []byte(strings.ReplaceAll(storeSpec, "NAME", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Store{}
	s.SetSource(first, "c1", nil)
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	s.SetSource(second, "c2", specs.ErrorList{{Source: filepath.Join(second, "a.yaml"), Reason: "a symbolic link, not exported"}})
	changed, err := s.Reload()
	if err == nil || len(changed) != 1 {
		t.Fatalf("changed %v err %v", changed, err)
	}
	sp, ok := s.Get("a")
	if !ok || sp.Err == nil || !strings.Contains(sp.Err.Error(), "symbolic link") {
		t.Fatalf("a: %+v", sp)
	}
	if _, orphan := s.Orphan("a"); orphan {
		t.Fatal("a left-out file made its LoadBalancer an orphan")
	}
}

// An unchanged file is not parsed again.
func TestStoreDoesNotReparseUnchangedFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(strings.ReplaceAll(storeSpec, "NAME", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Store{Path: dir}
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	before := s.parsed[filepath.Join(dir, "a.yaml")].lbs[0]
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.parsed[filepath.Join(dir, "a.yaml")].lbs[0] != before {
		t.Fatal("an unchanged file was parsed again")
	}
}
