// Command incuslb runs an HAProxy load balancer for an Incus host or cluster
// from a declarative LoadBalancer spec. See the README for the verbs.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// Exit codes.
const (
	exitOK      = 0
	exitInvalid = 1 // invalid input, or the operation failed
	exitUsage   = 2
)

// exitError carries an exit code, with or without a message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return ""
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	code := exitInvalid
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(stderr, "incuslb:", msg)
	}
	return code
}

const usage = `incuslb converges an HAProxy load balancer in Incus on a LoadBalancer spec.

Usage:
  incuslb validate -f FILE|DIR|-     check specs; print every problem with its field path
  incuslb render -f FILE [--members FILE]
                                     print the haproxy.cfg a spec renders to
  incuslb apply -f FILE|DIR|- [--dry-run]
                                     converge the HAProxy instance(s) on the specs
  incuslb diff -f FILE|DIR|-         show how the running haproxy.cfg differs (exit 1 when it does)
  incuslb status [NAME] [-o json]    show each LB, its applied generation and live server states
  incuslb run (--spec FILE|DIR | --git-repo URL) [--listen 127.0.0.1:9090] [--resync 5m]
                                     keep converging: on Incus events, spec or git changes and a resync
  incuslb maintenance on|off INSTANCE [--project P]
                                     take an LB instance out for planned work (a pair's replica
                                     hands the virtual address over first) and put it back
  incuslb stats NAME [--listen 127.0.0.1:9100|PATH]
                                     serve the LB's stats page (/stats, /metrics) on this host's
                                     loopback, through the instance, until Ctrl-C
  incuslb logs NAME [-f] [-n N]      show HAProxy's log from the LB's instance (-f: follow it)
  incuslb schema                     print the JSON Schema of a LoadBalancer document
  incuslb version                    print the version

Run 'incuslb VERB -h' for a verb's flags.
Exit codes: 0 ok, 1 invalid input or failure, 2 usage.
`

// run is the whole program; main only adds the process around it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &exitError{code: exitUsage}
	}
	env := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr}
	switch args[0] {
	case "validate":
		return env.validate(args[1:])
	case "render":
		return env.render(args[1:])
	case "apply":
		return env.apply(args[1:])
	case "diff":
		return env.diff(args[1:])
	case "status":
		return env.status(args[1:])
	case "run":
		return env.run(args[1:])
	case "maintenance":
		return env.maintenance(args[1:])
	case "stats":
		return env.stats(args[1:])
	case "logs":
		return env.logs(args[1:])
	case "schema":
		return env.schema(args[1:])
	case "version":
		return env.version(args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageErrorf("unknown verb %q", args[0])
}

// env is what every verb gets: the context and the standard streams.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}
