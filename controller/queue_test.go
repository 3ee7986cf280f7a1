package controller

import (
	"testing"
	"time"
)

func TestQueueCoalescesAndNeverHandsOutANameTwice(t *testing.T) {
	q := NewQueue()
	q.Add("a")
	q.Add("a")
	q.Add("b")
	if n := q.Len(); n != 2 {
		t.Fatalf("len %d, want 2 (a coalesced)", n)
	}
	name, _ := q.Get()
	if name != "a" {
		t.Fatalf("got %s", name)
	}
	q.Add("a") // while a runs: not handed out again yet
	if next, _ := q.Get(); next != "b" {
		t.Fatalf("got %s, want b", next)
	}
	if q.Len() != 0 {
		t.Fatal("a was handed out while it was processing")
	}
	q.Done("a")
	if next, _ := q.Get(); next != "a" {
		t.Fatalf("a was not re-queued on Done, got %s", next)
	}
}

func TestQueueAddAfterKeepsTheEarliest(t *testing.T) {
	q := NewQueue()
	q.AddAfter("a", time.Hour)
	q.AddAfter("a", 10*time.Millisecond)
	done := make(chan string)
	go func() { n, _ := q.Get(); done <- n }()
	select {
	case n := <-done:
		if n != "a" {
			t.Fatalf("got %s", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the earlier AddAfter did not fire")
	}
}

func TestBackoffDoublesAndCaps(t *testing.T) {
	if Backoff(0) != 250*time.Millisecond || Backoff(1) != 500*time.Millisecond || Backoff(30) != 2*time.Minute {
		t.Fatalf("backoff: %v %v %v", Backoff(0), Backoff(1), Backoff(30))
	}
}

func TestQueueShutDownReleasesGet(t *testing.T) {
	q := NewQueue()
	done := make(chan bool)
	go func() { _, ok := q.Get(); done <- ok }()
	q.ShutDown()
	if ok := <-done; ok {
		t.Fatal("Get returned ok after ShutDown")
	}
}
