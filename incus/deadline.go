package incus

import "context"

// untilDone runs call and returns its result, or ctx's error as soon as
// ctx ends, whichever comes first.
//
// Some calls of the Incus client ignore the context they are given: file
// reads and writes build their HTTP request without it, and exec dials
// its websockets with a timeout of its own. To an instance on a cluster
// member that just died, such a call waits until the member it goes
// through gives up on the forward (many seconds). A pass that learnt the
// member is lost (its context ended) must not wait that long, so the call
// goes on in the background, and late (when not nil) gets its result if
// it arrives after the caller left, to release what it holds.
func untilDone[T any](ctx context.Context, call func() (T, error), late func(T)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := call()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil && late != nil {
				late(r.v)
			}
		}()
		var zero T
		return zero, ctx.Err()
	}
}
