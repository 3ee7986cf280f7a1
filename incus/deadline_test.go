package incus

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestUntilDone(t *testing.T) {
	// A call that answers in time is returned as is.
	v, err := untilDone(context.Background(), func() (int, error) { return 7, nil }, nil)
	if v != 7 || err != nil {
		t.Fatalf("got %d, %v", v, err)
	}
	// A call that ignores ctx: the caller leaves when ctx ends, and late
	// gets the result that comes after.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	release, got := make(chan struct{}), make(chan int, 1)
	start := time.Now()
	_, err = untilDone(ctx, func() (int, error) { <-release; return 9, nil }, func(v int) { got <- v })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	close(release)
	if v := <-got; v != 9 {
		t.Fatalf("late got %d", v)
	}
}
