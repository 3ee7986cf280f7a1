// Package failpoint lets the e2e suite kill incuslb at a chosen step, to
// prove that the next pass converges from whatever state that leaves.
//
// It owns one environment variable, INCUSLB_FAILPOINT, read once at start.
// It must do nothing unless that variable names the point reached.
package failpoint

import (
	"os"
	"syscall"
)

var armed = os.Getenv("INCUSLB_FAILPOINT")

// Kill sends SIGKILL to this process when INCUSLB_FAILPOINT is name: no
// deferred function, no cleanup, as a crash or an OOM kill would.
func Kill(name string) {
	if armed != "" && armed == name {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}
