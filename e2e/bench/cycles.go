package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// cycleResult holds (a) and (b): per start/stop cycle of bench-x.
type cycleResult struct {
	stopLat  []time.Duration // instance-stopped event -> slot parked
	startLat []time.Duration // instance-started event -> slot filled
	served   []time.Duration // instance-started event -> first request served by it
	join     joinTimes       // from its address being visible
}

// joinTimes splits a join from the moment the controller can know of it
// (the address visible in Incus, or the label set when the address was
// there already) to the first request served.
type joinTimes struct {
	filled []time.Duration // -> slot filled (the controller)
	up     []time.Duration // slot filled -> UP (its first passing check)
	served []time.Duration // UP -> first request served by it
	total  []time.Duration // -> first request served
}

func (j *joinTimes) add(from, filled, up, served time.Time) {
	j.filled = append(j.filled, filled.Sub(from))
	j.up = append(j.up, up.Sub(filled))
	j.served = append(j.served, served.Sub(up))
	j.total = append(j.total, served.Sub(from))
}

// cycles starts and hard-stops bench-x, a member, again and again.
func (b *bench) cycles() (cycleResult, error) {
	var r cycleResult
	if err := b.incus("config", "set", "bench-x", "user.role=bench"); err != nil {
		return r, err
	}
	if err := b.incus("stop", "--force", "bench-x"); err != nil {
		return r, err
	}
	for i := 0; i < *cycles; i++ {
		drain(b.events)
		served := b.probe("bench-x")
		if err := b.incus("start", "bench-x"); err != nil {
			return r, err
		}
		started, err := b.waitEvent("bench-x", "instance-started")
		if err != nil {
			return r, err
		}
		addr, visible, err := b.waitAddress("bench-x")
		if err != nil {
			return r, err
		}
		filled, up, err := b.waitJoined(addr)
		if err != nil {
			return r, err
		}
		at := <-served
		if at.IsZero() {
			return r, fmt.Errorf("bench-x was never served")
		}
		r.startLat = append(r.startLat, filled.Sub(started))
		r.served = append(r.served, at.Sub(started))
		r.join.add(visible, filled, up, at)
		drain(b.events)
		if err := b.incus("stop", "--force", "bench-x"); err != nil {
			return r, err
		}
		stopped, err := b.waitEvent("bench-x", "instance-stopped")
		if err != nil {
			return r, err
		}
		parkedAt, err := b.waitSlot(addr, false)
		if err != nil {
			return r, err
		}
		r.stopLat = append(r.stopLat, parkedAt.Sub(stopped))
		fmt.Fprintf(os.Stderr, "cycle %d: stop->parked %s, start->filled %s, address->served %s\n",
			i+1, ms(r.stopLat[i]), ms(r.startLat[i]), ms(r.join.total[i]))
	}
	if err := b.incus("config", "unset", "bench-x", "user.role"); err != nil {
		return r, err
	}
	// The churn flips bench-x's label: it must run.
	if err := b.incus("start", "bench-x"); err != nil {
		return r, err
	}
	_, _, err := b.waitAddress("bench-x")
	return r, err
}

// probe sends a request through the LB every 2 ms (round robin over at
// most four members: one in four reaches a given one) until member
// answers, and reports when (zero after 60 s).
func (b *bench) probe(member string) <-chan time.Time {
	served := make(chan time.Time, 1)
	go func() {
		for d := time.Now().Add(60 * time.Second); time.Now().Before(d); time.Sleep(2 * time.Millisecond) {
			if _, by, err := b.get("/"); err == nil && by == member {
				served <- time.Now()
				return
			}
		}
		served <- time.Time{}
	}()
	return served
}

// waitAddress polls Incus every 5 ms until the instance has a global IPv4
// address on eth0, and returns it and when it was seen.
func (b *bench) waitAddress(name string) (string, time.Time, error) {
	for d := time.Now().Add(60 * time.Second); time.Now().Before(d); time.Sleep(5 * time.Millisecond) {
		inst, err := b.ic.GetInstance(context.Background(), b.project, name, true)
		if err == nil {
			if a := inst.IPv4("eth0"); a != "" {
				return a, time.Now(), nil
			}
		}
	}
	return "", time.Time{}, fmt.Errorf("%s got no address", name)
}

// waitJoined polls the admin socket every millisecond until a slot holds
// addr, then until that slot is UP, and returns both times.
func (b *bench) waitJoined(addr string) (filled, up time.Time, err error) {
	if filled, err = b.waitSlot(addr, true); err != nil {
		return
	}
	for d := time.Now().Add(30 * time.Second); time.Now().Before(d); time.Sleep(time.Millisecond) {
		states, _ := b.rt.ServersState(context.Background(), pool)
		for _, s := range states {
			if s.Address == addr && s.State() == "UP" {
				return filled, time.Now(), nil
			}
		}
	}
	return filled, up, fmt.Errorf("the slot of %s never came UP", addr)
}
