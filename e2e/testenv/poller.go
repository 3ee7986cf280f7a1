package testenv

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Poller sends a GET to a URL every 10 ms, each on a new connection and
// with a 250 ms timeout, and counts the answers and the failures (an error
// or a status other than 200) with the times they were sent. It stops by
// itself after 10 minutes.
type Poller struct {
	url       string
	stop      chan struct{}
	done      sync.WaitGroup
	mu        sync.Mutex
	ok        int
	failed    int
	firstFail time.Time
	recovered time.Time // the first good answer after the last failure
	errs      []string
}

// PollResult is what a Poller saw.
type PollResult struct {
	OK, Failed int
	// Window is the time from the sending of the first failed request to
	// the answer of the first good one after the last failure: how long
	// the client saw errors (0 when none failed).
	Window time.Duration
	Errors []string // the first few distinct failures
}

func (r PollResult) String() string {
	return fmt.Sprintf("%d ok, %d failed over %v (%s)", r.OK, r.Failed, r.Window, strings.Join(r.Errors, "; "))
}

// StartPoller starts polling url.
func StartPoller(url string) *Poller {
	p := &Poller{url: url, stop: make(chan struct{})}
	client := &http.Client{Timeout: 250 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			sent := time.Now()
			resp, err := client.Get(p.url)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			p.mu.Lock()
			switch {
			case err != nil:
				if p.failed == 0 {
					p.firstFail = sent
				}
				p.failed++
				p.recovered = time.Time{}
				if msg := err.Error(); len(p.errs) < 3 && !slices.Contains(p.errs, msg) {
					p.errs = append(p.errs, msg)
				}
			default:
				p.ok++
				if p.failed > 0 && p.recovered.IsZero() {
					p.recovered = time.Now()
				}
			}
			p.mu.Unlock()
		}
	}()
	return p
}

// Finish stops the poller and returns what it saw.
func (p *Poller) Finish() PollResult {
	close(p.stop)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	r := PollResult{OK: p.ok, Failed: p.failed, Errors: p.errs}
	if p.failed > 0 {
		end := p.recovered
		if end.IsZero() {
			end = time.Now() // it never recovered: the window runs to the end
		}
		r.Window = end.Sub(p.firstFail)
	}
	return r
}
