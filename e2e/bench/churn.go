package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of membership event in the churn, in the order the table prints
// them.
const (
	kindCleanStop = "clean stop + start"
	kindLabel     = "label flip (join or leave)"
	kindHardKill  = "hard kill + start"
	kindReload    = "structural reload"
	kindNone      = "between events"
)

var kinds = []string{kindCleanStop, kindLabel, kindHardKill, kindReload, kindNone}

// event is one membership change of the churn and the window it owns:
// from the moment it begins until its member serves again (or, for a
// leave, is parked) and one settle second has passed.
type event struct {
	kind, member string
	start, end   time.Time
	inflight     int // hard kill: sessions HAProxy had on the member just before
}

// request is one request of the load.
type request struct {
	start    time.Time
	lat      time.Duration
	ok       bool
	err      string
	servedBy string
}

type churnResult struct {
	requests, rate int
	failed         map[string]int // by event kind
	errs           map[string][]string
	counts         map[string]int // events by kind
	inflight       int            // hard kills: sessions on the killed member, summed
	p99            time.Duration
	worstWindow    int
	reloads        int
	ws             wsResult
}

// load sends requests at a fixed rate (open loop: one every 1/rate s
// whatever the answers), half on keep-alive connections and half on a new
// connection each, until stop is closed.
func (b *bench) load(stop <-chan struct{}) func() []request {
	var (
		mu   sync.Mutex
		reqs []request
		wg   sync.WaitGroup
	)
	keepAlive := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	fresh := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var n atomic.Int64
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(*rate))
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			c := keepAlive
			if n.Add(1)%2 == 0 {
				c = fresh
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := request{start: time.Now()}
				resp, err := c.Get("http://" + b.lbAddr + "/api/v1/items")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.ok, r.servedBy = resp.StatusCode == 200, resp.Header.Get("X-Served-By")
					if !r.ok {
						r.err = resp.Status
					}
				} else {
					r.err = err.Error()
				}
				r.lat = time.Since(r.start)
				mu.Lock()
				reqs = append(reqs, r)
				mu.Unlock()
			}()
		}
	}()
	return func() []request { wg.Wait(); mu.Lock(); defer mu.Unlock(); return reqs }
}

// churn runs the load and the held WebSockets while the script of events
// runs one at a time, then puts every failed request and broken WebSocket
// in the window of the event it fell in.
func (b *bench) churn() (churnResult, error) {
	before, err := b.rt.ShowProc(context.Background())
	if err != nil {
		return churnResult{}, err
	}
	stop := make(chan struct{})
	ws := b.holdWebSockets(*sockets, stop)
	results := b.load(stop)
	time.Sleep(2 * time.Second)
	events, err := b.script()
	time.Sleep(2 * time.Second)
	close(stop)
	reqs := results()
	wsr := ws()
	if err != nil {
		return churnResult{}, err
	}
	after, err := b.rt.ShowProc(context.Background())
	if err != nil {
		return churnResult{}, err
	}
	r := churnResult{requests: len(reqs), rate: *rate, reloads: after.Reloads - before.Reloads,
		failed: map[string]int{}, errs: map[string][]string{}, counts: map[string]int{}}
	for _, e := range events {
		r.counts[e.kind]++
		r.inflight += e.inflight
	}
	var lats []time.Duration
	windows := map[int64]int{}
	for _, q := range reqs {
		if !q.ok {
			k := kindOf(events, q.start)
			r.failed[k]++
			if len(r.errs[k]) < 5 {
				r.errs[k] = append(r.errs[k], q.err)
			}
			continue
		}
		lats = append(lats, q.lat)
		windows[q.start.Add(q.lat).Unix()]++
	}
	r.p99 = pct(lats, 99)
	r.worstWindow = worstSecond(windows)
	r.ws = classify(wsr, events)
	return r, nil
}

// kindOf is the kind of the event whose window holds t, or kindNone.
func kindOf(events []event, t time.Time) string {
	for _, e := range events {
		if !t.Before(e.start) && !t.After(e.end) {
			return e.kind
		}
	}
	return kindNone
}

// worstSecond is the fewest answers in a whole second, the first and last
// (partial) seconds left out.
func worstSecond(windows map[int64]int) int {
	var first, last int64
	for s := range windows {
		if first == 0 || s < first {
			first = s
		}
		if s > last {
			last = s
		}
	}
	worst := -1
	for s := first + 1; s < last; s++ {
		if n := windows[s]; worst < 0 || n < worst {
			worst = n
		}
	}
	return worst
}

// script runs the membership events: clean stop/start cycles of the three
// members in turn, label flips of bench-x, hard kills and structural
// reloads, interleaved, one at a time.
func (b *bench) script() ([]event, error) {
	members := []string{"bench-a", "bench-b", "bench-c"}
	var events []event
	do := func(kind, member string, f func(*event) error) error {
		e := event{kind: kind, member: member, start: time.Now()}
		err := f(&e)
		time.Sleep(time.Second)
		e.end = time.Now()
		events = append(events, e)
		fmt.Fprintf(os.Stderr, "churn: %s %s: %s\n", kind, member, e.end.Sub(e.start).Round(time.Millisecond))
		return err
	}
	labelled := false
	n := max(*cleanStops, *labelFlips, *hardKills, *structural)
	for i := 0; i < n; i++ {
		m := members[i%len(members)]
		if due(i, *cleanStops, n) {
			if err := do(kindCleanStop, m, func(*event) error { return b.stopStart(m, false) }); err != nil {
				return events, err
			}
		}
		if due(i, *labelFlips, n) {
			if err := do(kindLabel, "bench-x", func(*event) error { labelled = !labelled; return b.flip(labelled) }); err != nil {
				return events, err
			}
		}
		if k := members[(i+1)%len(members)]; due(i, *hardKills, n) {
			if err := do(kindHardKill, k, func(e *event) error {
				e.inflight = b.sessions(k)
				return b.stopStart(k, true)
			}); err != nil {
				return events, err
			}
		}
		if due(i, *structural, n) {
			if err := do(kindReload, "", func(*event) error { return b.reload() }); err != nil {
				return events, err
			}
		}
	}
	if labelled {
		_ = b.flip(false)
	}
	return events, nil
}

// due spreads count events over n iterations: it reports whether
// iteration i holds one.
func due(i, count, n int) bool { return i*count/n != (i+1)*count/n }

// stopStart stops a member (cleanly, or with --force), starts it again and
// waits until it serves.
func (b *bench) stopStart(m string, force bool) error {
	args := []string{"stop", m}
	if force {
		args = append(args, "--force")
	}
	if err := b.incus(args...); err != nil {
		return err
	}
	if err := b.incus("start", m); err != nil {
		return err
	}
	return b.waitServed(m, 60*time.Second)
}

// flip labels bench-x into the pool (and waits until it serves) or takes
// the label off (and waits until its slot is parked: drained first).
func (b *bench) flip(join bool) error {
	if join {
		if err := b.incus("config", "set", "bench-x", "user.role=bench"); err != nil {
			return err
		}
		return b.waitServed("bench-x", 30*time.Second)
	}
	if err := b.incus("config", "unset", "bench-x", "user.role"); err != nil {
		return err
	}
	_, err := b.waitSlot(b.ipv4("bench-x"), false)
	return err
}

// reload changes the spec structurally (the server timeout) and waits
// until HAProxy runs it.
func (b *bench) reload() error {
	before, err := b.rt.ShowProc(context.Background())
	if err != nil {
		return err
	}
	b.serverTimeout = map[string]string{"60s": "61s", "61s": "60s"}[b.serverTimeout]
	if err := b.writeSpec(b.serverTimeout); err != nil {
		return err
	}
	for d := time.Now().Add(30 * time.Second); time.Now().Before(d); time.Sleep(20 * time.Millisecond) {
		if p, err := b.rt.ShowProc(context.Background()); err == nil && p.Reloads > before.Reloads {
			return nil
		}
	}
	return fmt.Errorf("no reload after the spec changed")
}

// waitServed waits until a request through the LB is served by m.
func (b *bench) waitServed(m string, within time.Duration) error {
	for d := time.Now().Add(within); time.Now().Before(d); time.Sleep(20 * time.Millisecond) {
		if _, by, err := b.get("/"); err == nil && by == m {
			return nil
		}
	}
	return fmt.Errorf("%s was not served within %v", m, within)
}

// sessions is how many sessions HAProxy has on member m now.
func (b *bench) sessions(m string) int {
	addr := b.ipv4(m)
	states, err := b.rt.ServersState(context.Background(), pool)
	if err != nil {
		return 0
	}
	sessions, err := b.rt.Sessions(context.Background())
	if err != nil {
		return 0
	}
	for _, s := range states {
		if s.Address == addr {
			return sessions[pool+"/"+s.Name]
		}
	}
	return 0
}
