package controller

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
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
	s := &Store{Path: dir}
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
	r := &LBReconciler{Store: s, Applier: &Applier{Incus: f, Log: logr.Discard()}, Log: logr.Discard()}
	if _, err := r.Reconcile(context.Background(), Request{Name: "edge"}); err != nil {
		t.Fatal(err)
	}
	st := StatusFromConfig(f.inst.Config)
	if c := st.Condition(ConditionOrphaned); c == nil || c.Status != "True" || len(f.deleted) != 0 {
		t.Fatalf("orphan not marked, or deleted without --prune: %+v %v", st.Conditions, f.deleted)
	}
	r.Prune = true
	if _, err := r.Reconcile(context.Background(), Request{Name: "edge"}); err != nil || len(f.deleted) != 1 || f.deleted[0] != "default/lb" {
		t.Fatalf("--prune: %v %v", err, f.deleted)
	}
}
