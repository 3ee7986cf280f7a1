package main

import (
	"fmt"
	"strings"
	"time"
)

// report prints the tables of BENCHMARKS.md.
func report(cyc cycleResult, reused, fresh joinTimes, ch churnResult) {
	fmt.Printf("| measure | samples | p50 | p99 | max | target |\n|---|---|---|---|---|---|\n")
	row := func(name string, d []time.Duration, target string) {
		fmt.Printf("| %s | %d | %s | %s | %s | %s |\n", name, len(d), ms(pct(d, 50)), ms(pct(d, 99)), ms(pct(d, 100)), target)
	}
	row("(a) instance-stopped event -> slot parked (runtime API)", cyc.stopLat, "p99 < 50 ms")
	row("(a) instance-started event -> slot filled (incl. DHCP wait)", cyc.startLat, "-")
	row("(b) instance-started event -> first request served by it", cyc.served, "p50 < 1.5 s")
	joinRows := func(what string, j joinTimes, target string) {
		row(what+": -> slot filled (controller)", j.filled, "-")
		row(what+": slot filled -> UP (first passing check)", j.up, "-")
		row(what+": UP -> first request served by it", j.served, "-")
		row(what+": total", j.total, target)
	}
	joinRows("(f) restarted member, address visible", cyc.join, "p50 < 300 ms")
	joinRows("(f) new instance at a reused address, labelled", reused, "p50 < 300 ms")
	joinRows("(f) new instance at a fresh address, labelled", fresh, "p50 < 300 ms")

	fmt.Printf("\n| (c) churn at %d rps, half keep-alive, half new connections | events | failed requests | |\n|---|---|---|---|\n", ch.rate)
	total := 0
	for _, k := range kinds {
		note := ""
		if k == kindHardKill {
			note = fmt.Sprintf("%d sessions (WebSockets included) were on the killed members as they were killed", ch.inflight)
		}
		if len(ch.errs[k]) > 0 {
			note = strings.TrimPrefix(note+"; e.g. "+strings.Join(ch.errs[k], " / "), "; ")
		}
		fmt.Printf("| %s | %d | %d | %s |\n", k, ch.counts[k], ch.failed[k], note)
		total += ch.failed[k]
	}
	fmt.Printf("| all | | %d of %d | p99 latency %s, worst 1 s window %d answers, %d HAProxy reloads |\n",
		total, ch.requests, ms(ch.p99), ch.worstWindow, ch.reloads)

	fmt.Printf("\n| (e) %d WebSockets held through the churn | broken | |\n|---|---|---|\n", ch.ws.held)

	for _, c := range []string{causeOwnBackend, causeReload, causeOther} {
		fmt.Printf("| %s | %d | %s |\n", c, ch.ws.byCause[c], strings.Join(ch.ws.samples[c], " / "))
	}
}
