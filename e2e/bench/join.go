package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"
)

// joinSeries labels new instances into the pool: one after another at the
// same static address (each a new instance, with a new MAC: the LB's
// neighbour table knows the address at the previous one's), then each at
// an address the LB never talked to. The service already listens when the
// label is set, so the label (Incus's instance-updated event) is the moment
// the controller can know.
func (b *bench) joinSeries() (reused, fresh joinTimes, err error) {
	prefix, err := b.staticPrefix()
	if err != nil {
		return reused, fresh, err
	}
	one := func(name, addr string, into *joinTimes) error {
		if err := b.backend(name, "", addr); err != nil {
			return err
		}
		drain(b.events)
		served := b.probe(name)
		if err := b.incus("config", "set", name, "user.role=bench"); err != nil {
			return err
		}
		filled, up, err := b.waitJoined(addr)
		if err != nil {
			return err
		}
		// The label counts from Incus's own instance-updated event, not
		// from before the CLI call (which alone takes 100 ms or more).
		labelled, err := b.waitEvent(name, "instance-updated")
		if err != nil {
			return err
		}
		at := <-served
		if at.IsZero() {
			return fmt.Errorf("%s was never served", name)
		}
		if into != nil {
			into.add(labelled, filled, up, at)
			fmt.Fprintf(os.Stderr, "join %s at %s: labelled->served %s\n", name, addr, ms(at.Sub(labelled)))
		}
		// Let it serve a while (the LB learns its MAC), then delete it.
		time.Sleep(1500 * time.Millisecond)
		if err := b.incus("delete", "--force", name); err != nil {
			return err
		}
		_, err = b.waitSlot(addr, false)
		return err
	}
	// The first instance at the reused address is fresh: not measured.
	for i := 0; i <= *joins; i++ {
		into := &reused
		if i == 0 {
			into = nil
		}
		if err := one(fmt.Sprintf("bench-r%d", i), prefix+".210", into); err != nil {
			return reused, fresh, err
		}
	}
	for i := 0; i < *joins; i++ {
		if err := one(fmt.Sprintf("bench-f%d", i), fmt.Sprintf("%s.%d", prefix, 211+i), &fresh); err != nil {
			return reused, fresh, err
		}
	}
	return reused, fresh, nil
}

// staticPrefix is the first three octets of the bridge's address: the
// bridge hands out .2-.199 by DHCP (hack/incus-env.sh), .200 and up are
// static.
func (b *bench) staticPrefix() (string, error) {
	inst, err := b.ic.GetInstance(context.Background(), b.project, lbName, true)
	if err != nil {
		return "", err
	}
	addr := inst.IPv4("eth0")
	if i := strings.LastIndex(addr, "."); i > 0 {
		return addr[:i], nil
	}
	return "", fmt.Errorf("the LB has no address")
}
