package main

import "fmt"

// logs prints HAProxy's log from an LB's instance: the lines its current
// worker keeps in the log ring (haproxy.LogRing), and with -f the new ones
// as they come, across reloads, until Ctrl-C.
func (e *env) logs(args []string) error {
	fs := e.newFlags("logs", "logs NAME [-f] [-n N] [--instance NAME] [--remote NAME]")
	follow := fs.Bool("f", false, "follow: print new lines as HAProxy logs them, until Ctrl-C")
	tail := fs.Int("n", 0, "print only the last N lines logged so far (0: all that the ring holds)")
	f := addInstanceFlags(fs, true)
	var name string
	if err := parse(fs, args, &name); err != nil {
		return err
	}
	if name == "" {
		return usageErrorf("logs: give the LoadBalancer's name")
	}
	if *tail < 0 {
		return usageErrorf("-n %d: give a number of lines, 0 or more", *tail)
	}
	t, err := e.findLB(f, name)
	if err != nil {
		return err
	}
	rt := t.runtime()
	if !*follow || *tail > 0 {
		lines, err := rt.Log(e.ctx)
		if err != nil {
			return fmt.Errorf("the log of %s: %w", t, err)
		}
		if *tail > 0 && len(lines) > *tail {
			lines = lines[len(lines)-*tail:]
		}
		for _, l := range lines {
			fmt.Fprintln(e.stdout, l)
		}
		if !*follow {
			return nil
		}
	}
	// With -n, what came before is printed: follow from now. (A line
	// logged between the two reads is missed.)
	err = rt.FollowLog(e.ctx, *tail > 0, func(l string) { fmt.Fprintln(e.stdout, l) }, func(pid int) {
		fmt.Fprintf(e.stderr, "incuslb: HAProxy in %s reloaded: following the log of its new worker (pid %d) from its start\n", t, pid)
	})
	if err != nil && e.ctx.Err() == nil {
		return fmt.Errorf("following the log of %s: %w", t, err)
	}
	return nil
}
