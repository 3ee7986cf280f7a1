package controller

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/incus"
)

// scriptedReconciler hangs on "stuck" until its context ends, panics on
// "boom", and counts passes.
type scriptedReconciler struct {
	mu     sync.Mutex
	passes map[string]int
}

func (s *scriptedReconciler) Reconcile(ctx context.Context, req Request) (Result, error) {
	s.mu.Lock()
	s.passes[req.Name]++
	s.mu.Unlock()
	switch req.Name {
	case "stuck":
		<-ctx.Done()
		return Result{}, ctx.Err()
	case "boom":
		panic("a bug in a pass")
	}
	return Result{RequeueAfter: 10 * time.Millisecond}, nil
}

func (s *scriptedReconciler) EventSeen(string, time.Time) {}

func (s *scriptedReconciler) InstanceEvent(incus.LifecycleEvent) {}

func (s *scriptedReconciler) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.passes[name]
}

type quietEvents struct{}

func (quietEvents) WatchLifecycle(ctx context.Context, connected func(), _ func(incus.LifecycleEvent)) error {
	connected()
	<-ctx.Done()
	return ctx.Err()
}

func lbSpecDir(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n+".yaml"), []byte(strings.ReplaceAll(storeSpec, "NAME", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// Two LBs hang; a panic in a third; the fourth keeps converging, and the
// controller stays up.
func TestStuckOrPanickingLBsDoNotDelayOthers(t *testing.T) {
	rec := &scriptedReconciler{passes: map[string]int{}}
	dir := lbSpecDir(t, "stuck", "boom", "ok")
	// a second stuck LB, under another name that hangs the same way
	r := &Runner{Store: &Store{Path: dir}, Reconciler: rec, Events: quietEvents{}, Log: logr.Discard(), Workers: 3,
		SpecPoll: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for (rec.count("ok") < 20 || rec.count("boom") < 2) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := rec.count("ok"); n < 20 {
		t.Fatalf("the healthy LB got %d passes while another hung", n)
	}
	if rec.count("boom") < 2 {
		t.Fatalf("the panicking LB was not retried: %d passes", rec.count("boom"))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(shutdownGrace + 2*time.Second):
		t.Fatal("Run did not return after the shutdown grace")
	}
}

func TestReadyz(t *testing.T) {
	rec := &scriptedReconciler{passes: map[string]int{}}
	r := &Runner{Store: &Store{Path: t.TempDir()}, Reconciler: rec, Events: quietEvents{}, Log: logr.Discard(),
		SpecPoll: 50 * time.Millisecond}
	if r.Ready() {
		t.Fatal("ready before Run")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = r.Run(ctx) }()
	deadline := time.Now().Add(3 * time.Second)
	for !r.Ready() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !r.Ready() {
		t.Fatalf("with no LoadBalancer the runner never became ready: %s", r.NotReady())
	}

	stuck := &Runner{Store: &Store{Path: lbSpecDir(t, "stuck", "ok")}, Reconciler: rec, Events: quietEvents{}, Log: logr.Discard(),
		SpecPoll: 50 * time.Millisecond}
	go func() { _ = stuck.Run(ctx) }()
	time.Sleep(300 * time.Millisecond)
	if stuck.Ready() || !strings.Contains(stuck.NotReady(), "stuck") {
		t.Fatalf("ready while an LB has not finished a pass: %q", stuck.NotReady())
	}
}

// The webhook may call SyncGit while Run starts: no data race (go test
// -race), and no lost or blocked call.
func TestSyncGitRacesRunSafely(t *testing.T) {
	r := &Runner{Store: &Store{Path: t.TempDir()}, Reconciler: &scriptedReconciler{passes: map[string]int{}},
		Events: quietEvents{}, Log: logr.Discard(), SpecPoll: 50 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); r.SyncGit("webhook") }()
	}
	go func() { _ = r.Run(ctx) }()
	wg.Wait()
}
