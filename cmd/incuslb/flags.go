package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// newFlags returns a FlagSet for a verb that prints its usage to stderr.
func (e *env) newFlags(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: incuslb %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, allowing flags after positional arguments, and turns
// -h into a clean exit and any other flag error into a usage error. The
// positional arguments fill the given pointers; more of them is an error.
func parse(fs *flag.FlagSet, args []string, positional ...*string) error {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return &exitError{code: exitOK}
			}
			return &exitError{code: exitUsage}
		}
		if fs.NArg() == 0 {
			break
		}
		rest = append(rest, fs.Arg(0))
		args = fs.Args()[1:]
	}
	for i := 0; i < len(positional) && len(rest) > 0; i++ {
		*positional[i] = rest[0]
		rest = rest[1:]
	}
	if len(rest) > 0 {
		return usageErrorf("%s: unexpected arguments: %s", fs.Name(), strings.Join(rest, " "))
	}
	return nil
}
