package main

import (
	"fmt"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/incuslb/incuslb/e2e/testenv"
)

// wsBreak is one WebSocket that ended while it was held.
type wsBreak struct {
	at      time.Time
	backend string
	err     string
}

type wsResult struct {
	held   int
	breaks []wsBreak
	// byCause counts the breaks by what happened to their backend then
	// (see classify).
	byCause map[string]int
	samples map[string][]string
}

// holdWebSockets opens n WebSockets through the LB and holds them until
// stop is closed: each sends a message every 5 s and expects it back. One
// that breaks is recorded, with the backend that answered it, and opened
// again.
func (b *bench) holdWebSockets(n int, stop <-chan struct{}) func() wsResult {
	var (
		mu sync.Mutex
		r  = wsResult{held: n}
		wg sync.WaitGroup
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 5 * time.Millisecond) // spread the opening
			for {
				conn, backend, err := testenv.DialWS(b.lbAddr, nil)
				if err != nil {
					select {
					case <-stop:
						return
					case <-time.After(200 * time.Millisecond):
						continue
					}
				}
				err = hold(conn, stop, i)
				conn.Close()
				if err == nil {
					return // stopped
				}
				mu.Lock()
				r.breaks = append(r.breaks, wsBreak{at: time.Now(), backend: backend, err: err.Error()})
				mu.Unlock()
			}
		}(i)
	}
	return func() wsResult { wg.Wait(); mu.Lock(); defer mu.Unlock(); return r }
}

// hold exchanges a message every 5 s until stop (nil) or a failure.
func hold(conn *websocket.Conn, stop <-chan struct{}, i int) error {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return nil
		case <-tick.C:
		}
		if err := testenv.Echo(conn, fmt.Sprintf("ws %d message %d", i, n)); err != nil {
			return err
		}
	}
}

// Causes of a broken WebSocket.
const (
	causeOwnBackend = "its own backend stopped, was killed or left"
	causeReload     = "a reload (its backend was fine)"
	causeOther      = "nothing explains it"
)

// classify puts each break down to what happened to its backend then: an
// event of its own backend (a stop, a kill, a leave: expected), a reload,
// or nothing. A break is noticed up to one exchange (5 s, plus 5 s of read
// deadline) after it happened, so an event counts until 10 s after its
// window.
func classify(r wsResult, events []event) wsResult {
	r.byCause, r.samples = map[string]int{}, map[string][]string{}
	for _, br := range r.breaks {
		cause := causeOther
		for _, e := range events {
			if br.at.Before(e.start) || br.at.After(e.end.Add(10*time.Second)) {
				continue
			}
			if e.member == br.backend {
				cause = causeOwnBackend
				break
			}
			if e.kind == kindReload {
				cause = causeReload
			}
		}
		r.byCause[cause]++
		if len(r.samples[cause]) < 5 {
			r.samples[cause] = append(r.samples[cause], br.backend+": "+br.err)
		}
	}
	return r
}
