package controller

import (
	"sync"
	"time"
)

// Backoff bounds for failed requests.
const (
	backoffBase = 250 * time.Millisecond
	backoffMax  = 2 * time.Minute
)

// Queue is a work queue of LoadBalancer names. A name added many times
// before it runs runs once (triggers coalesce); a name is never handed out
// twice at once: added while it runs, it runs again once Done.
type Queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string             // ready to run, FIFO
	dirty      map[string]bool      // in order, or to be re-added on Done
	processing map[string]bool      // handed out, not yet Done
	waiting    map[string]time.Time // AddAfter deadlines
	timers     map[string]*time.Timer
	failures   map[string]int
	shutdown   bool
}

// NewQueue returns an empty queue.
func NewQueue() *Queue {
	q := &Queue{
		dirty:      map[string]bool{},
		processing: map[string]bool{},
		waiting:    map[string]time.Time{},
		timers:     map[string]*time.Timer{},
		failures:   map[string]int{},
	}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues name to run as soon as a worker is free.
func (q *Queue) Add(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.add(name)
}

func (q *Queue) add(name string) {
	if q.shutdown || q.dirty[name] {
		return
	}
	q.dirty[name] = true
	if q.processing[name] {
		return // re-added by Done
	}
	q.order = append(q.order, name)
	q.cond.Signal()
}

// AddAfter queues name after d. Of several pending delays for one name the
// earliest wins.
func (q *Queue) AddAfter(name string, d time.Duration) {
	if d <= 0 {
		q.Add(name)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.shutdown {
		return
	}
	at := time.Now().Add(d)
	if old, ok := q.waiting[name]; ok && !at.Before(old) {
		return
	}
	q.waiting[name] = at
	if t := q.timers[name]; t != nil {
		t.Stop()
	}
	q.timers[name] = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if w, ok := q.waiting[name]; ok && !time.Now().Before(w) {
			delete(q.waiting, name)
			delete(q.timers, name)
			q.add(name)
		}
	})
}

// AddRateLimited queues name after its backoff, which doubles with every
// failure since the last Forget.
func (q *Queue) AddRateLimited(name string) {
	q.mu.Lock()
	n := q.failures[name]
	q.failures[name] = n + 1
	q.mu.Unlock()
	q.AddAfter(name, Backoff(n))
}

// Backoff is the delay after n earlier consecutive failures.
func Backoff(n int) time.Duration {
	d := backoffBase
	for i := 0; i < n && d < backoffMax; i++ {
		d *= 2
	}
	return min(d, backoffMax)
}

// Forget resets name's backoff.
func (q *Queue) Forget(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, name)
}

// Get blocks until a name is ready and hands it out; ok is false once the
// queue is shut down.
func (q *Queue) Get() (name string, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.shutdown {
		q.cond.Wait()
	}
	if q.shutdown {
		return "", false
	}
	name, q.order = q.order[0], q.order[1:]
	q.processing[name] = true
	delete(q.dirty, name)
	return name, true
}

// Done marks name finished; if it was added meanwhile, it is queued again.
func (q *Queue) Done(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, name)
	if q.dirty[name] && !q.shutdown {
		q.order = append(q.order, name)
		q.cond.Signal()
	}
}

// Len is how many names are ready to run.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// ShutDown wakes every Get with ok false and drops pending delays.
func (q *Queue) ShutDown() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.shutdown = true
	for _, t := range q.timers {
		t.Stop()
	}
	q.cond.Broadcast()
}
