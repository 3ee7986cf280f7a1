package main

import (
	"fmt"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func (e *env) version(args []string) error {
	fs := e.newFlags("version", "version")
	if err := parse(fs, args); err != nil {
		return err
	}
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	_, err := fmt.Fprintf(e.stdout, "incuslb %s\n", v)
	return err
}
