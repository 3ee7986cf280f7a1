package haproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// LogRing is the ring buffer in HAProxy's memory that its log also goes
// to, besides /dev/log (which nothing reads in a minimal image): `incuslb
// logs` reads it with `show events` on the admin socket.
//
// Each worker has a ring of its own, in its memory: a reload starts the
// new worker with an empty ring (the old worker's goes when it exits), so
// the log shows what the current worker logged since it started, at most
// logRingSize bytes of it, the oldest lines dropped first. A restart of
// HAProxy or of the instance empties it too.
const LogRing = "incuslb-log"

// The ring's bounds: about 4000 lines of 250 bytes; a longer line is cut.
const (
	logRingSize   = 1 << 20
	logRingMaxLen = 2048
)

// renderLogRing writes the ring section; the global section sends the log
// there in ISO format (a timestamp with microseconds, then the line).
func renderLogRing(w *writer) {
	w.section("ring " + LogRing)
	w.line(`    description "HAProxy's log, for incuslb logs"`)
	w.line("    format iso")
	w.line("    maxlen %d", logRingMaxLen)
	w.line("    size %d", logRingSize)
}

// ErrNoLogRing is the answer of a HAProxy that runs a config without the
// log ring: one written by an incuslb from before it had one.
var ErrNoLogRing = errors.New("HAProxy runs a config without the " + LogRing + " ring (written by an older incuslb); the next apply reloads it with one")

// Log returns the lines of the current worker's log ring, oldest first.
func (r *Runtime) Log(ctx context.Context) ([]string, error) {
	out, err := r.Command(ctx, "show events "+LogRing)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(out, "No such event sink") {
		return nil, ErrNoLogRing
	}
	var lines []string
	lw := &LineWriter{Line: func(l string) { lines = append(lines, l) }}
	_, _ = lw.Write([]byte(out))
	lw.Flush()
	return lines, nil
}

// followPoll is how often FollowLog asks the master which worker is
// current; followGone how long it waits for a worker to come back once
// HAProxy stopped answering.
const (
	followPoll = time.Second
	followGone = 30 * time.Second
)

// FollowLog calls line with each line of the log as HAProxy logs it
// (`show events RING -w`), from the start of the current worker's ring or,
// with onlyNew, from now, until ctx ends. The admin socket must be a
// Follower.
//
// A session on the admin socket keeps the worker that holds it alive, and
// that worker's ring gets nothing once a reload has replaced it. So
// FollowLog asks the master every followPoll which worker is current, and
// when that changes (or the stream ends) it calls reloaded with the new
// worker's PID and follows the new worker's ring from its start: no line
// of the new worker is missed, unless it logged more than the ring holds
// in the meantime; lines the old worker logs after the switch (its last
// sessions ending) are not shown.
func (r *Runtime) FollowLog(ctx context.Context, onlyNew bool, line func(string), reloaded func(pid int)) error {
	f, ok := r.Admin.(Follower)
	if !ok {
		return fmt.Errorf("the route to the admin socket cannot follow a command")
	}
	if out, err := r.Command(ctx, "show events "+LogRing+" -n"); err != nil {
		return err
	} else if strings.HasPrefix(out, "No such event sink") {
		return ErrNoLogRing
	}
	pid, err := r.awaitWorker(ctx, 0)
	if err != nil {
		return err
	}
	for {
		cmd := "show events " + LogRing + " -w"
		if onlyNew {
			cmd += " -n"
		}
		next, err := r.followWorker(ctx, f, cmd, pid, line)
		if err != nil || ctx.Err() != nil {
			return err
		}
		pid, onlyNew = next, false
		reloaded(pid)
	}
}

// followWorker follows cmd on worker pid's admin socket until ctx ends
// (0, nil) or another worker is current (its PID).
func (r *Runtime) followWorker(ctx context.Context, f Follower, cmd string, pid int, line func(string)) (int, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	lw := &LineWriter{Line: line}
	go func() { done <- f.Follow(sctx, cmd+"\n", lw) }()
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			<-done
			return 0, nil
		case err := <-done:
			// HAProxy ended the session: the worker stopped (a hard stop
			// after a reload, or HAProxy itself).
			if err != nil {
				return 0, err
			}
			lw.Flush()
			return r.awaitWorker(ctx, pid)
		case <-tick.C:
			p, err := r.ShowProc(ctx)
			if err != nil || len(p.Workers) == 0 || p.Workers[0] == pid {
				continue // the same worker, or a master re-executing
			}
			cancel()
			<-done
			return p.Workers[0], nil
		}
	}
}

// awaitWorker returns the PID of the current worker once it is not old,
// waiting up to followGone for one.
func (r *Runtime) awaitWorker(ctx context.Context, old int) (int, error) {
	deadline := time.Now().Add(followGone)
	for {
		p, err := r.ShowProc(ctx)
		if err == nil && len(p.Workers) > 0 && p.Workers[0] != old {
			return p.Workers[0], nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("no worker")
			}
			return 0, fmt.Errorf("HAProxy has no running worker after %v: %w", followGone, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(followPoll / 4):
		}
	}
}

// maxLogLine bounds a line LineWriter keeps; a longer one is cut (the ring
// cuts at logRingMaxLen already).
const maxLogLine = 64 << 10

// LineWriter splits what is written to it into lines and calls Line with
// each non-empty one, without its end of line; a line longer than
// maxLogLine is cut there. What follows the last end of line waits for the
// next write, or Flush.
type LineWriter struct {
	Line func(string)
	buf  []byte
	skip bool // the rest of a line that was cut
}

// Write implements io.Writer; it never fails.
func (l *LineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		end := len(p)
		if i >= 0 {
			end = i
		}
		if !l.skip {
			l.buf = append(l.buf, p[:min(end, maxLogLine-len(l.buf))]...)
		}
		if i < 0 {
			if !l.skip && len(l.buf) >= maxLogLine {
				l.emit()
				l.skip = true
			}
			break
		}
		if !l.skip {
			l.emit()
		}
		l.skip = false
		p = p[i+1:]
	}
	return n, nil
}

// Flush passes on what is held as a line, if it is not empty.
func (l *LineWriter) Flush() {
	if !l.skip {
		l.emit()
	}
	l.skip = false
}

func (l *LineWriter) emit() {
	s := strings.TrimRight(string(l.buf), "\r")
	l.buf = l.buf[:0]
	if strings.TrimSpace(s) != "" {
		l.Line(s)
	}
}

var _ io.Writer = (*LineWriter)(nil)
