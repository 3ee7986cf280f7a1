package testenv

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Poller is a client that sends a GET to a URL every 10 ms, open loop
// (each request on its own new connection, whether or not the one before
// has answered; at most 500 in flight), and records when each was sent and
// whether it got a 200 within its timeout. It stops by itself after 10
// minutes.
type Poller struct {
	url     string
	timeout time.Duration
	stop    chan struct{}
	done    sync.WaitGroup
	start   time.Time

	mu   sync.Mutex
	sent []shot
}

type shot struct {
	at  time.Duration // from the start of the poller
	err string        // "" for a 200
}

// PollResult is what a Poller saw, ordered by the time requests were sent.
type PollResult struct {
	OK, Failed int
	// Window runs from the sending of the first failed request to the
	// sending of the first good one after the last failure: how long
	// requests failed.
	Window time.Duration
	// ErrorTime is the failed requests times the polling period: the time
	// a client that polls every 10 ms saw errors, in all.
	ErrorTime time.Duration
	Errors    []string        // the first few distinct failures
	At        []time.Duration // when failed requests were sent (the first 20)
}

func (r PollResult) String() string {
	return fmt.Sprintf("%d ok, %d failed (%v of errors) within %v, sent at %v (%s)",
		r.OK, r.Failed, r.ErrorTime, r.Window, r.At, strings.Join(r.Errors, "; "))
}

// pollPeriod is how often a Poller sends a request.
const pollPeriod = 10 * time.Millisecond

// StartPoller starts polling url, each request with a 1 s timeout.
func StartPoller(url string) *Poller { return StartPollerTimeout(url, time.Second) }

// StartPollerTimeout starts polling url, each request with timeout.
func StartPollerTimeout(url string, timeout time.Duration) *Poller {
	p := &Poller{url: url, timeout: timeout, stop: make(chan struct{}), start: time.Now()}
	client := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	inflight := make(chan struct{}, 500)
	p.done.Add(1)
	go func() {
		defer p.done.Done()
		tick := time.NewTicker(pollPeriod)
		defer tick.Stop()
		for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			select {
			case inflight <- struct{}{}:
			default:
				continue // 500 in flight: this tick is skipped
			}
			p.done.Add(1)
			go func(at time.Duration) {
				defer p.done.Done()
				defer func() { <-inflight }()
				msg := ""
				resp, err := client.Get(p.url)
				switch {
				case err != nil:
					msg = err.Error()
				default:
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						msg = fmt.Sprintf("status %d", resp.StatusCode)
					}
				}
				p.mu.Lock()
				p.sent = append(p.sent, shot{at: at, err: msg})
				p.mu.Unlock()
			}(time.Since(p.start))
		}
	}()
	return p
}

// Finish stops the poller, waits for the requests in flight (at most their
// timeout) and returns what it saw.
func (p *Poller) Finish() PollResult {
	close(p.stop)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.Slice(p.sent, func(i, j int) bool { return p.sent[i].at < p.sent[j].at })
	var r PollResult
	firstFail, lastFail := -1, -1
	for i, s := range p.sent {
		if s.err == "" {
			r.OK++
			continue
		}
		r.Failed++
		if firstFail < 0 {
			firstFail = i
		}
		lastFail = i
		if len(r.At) < 20 {
			r.At = append(r.At, s.at.Round(time.Millisecond))
		}
		if len(r.Errors) < 3 && !slices.Contains(r.Errors, s.err) {
			r.Errors = append(r.Errors, s.err)
		}
	}
	if firstFail < 0 {
		return r
	}
	end := func(from int) time.Duration { // the first good one sent after from
		for _, s := range p.sent[from+1:] {
			if s.err == "" {
				return s.at
			}
		}
		return p.sent[len(p.sent)-1].at
	}
	r.Window = end(lastFail) - p.sent[firstFail].at
	r.ErrorTime = time.Duration(r.Failed) * pollPeriod
	return r
}
