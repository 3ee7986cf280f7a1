package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"sync"
	"time"
)

// LockedBuffer is a bytes.Buffer that a process and the test can use at
// once (its output, read while it runs).
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Len is how many bytes were written so far: a mark to read from.
func (l *LockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Process is a command run in the background (an incuslb run).
type Process struct {
	Cmd  *exec.Cmd
	Done chan struct{} // closed when it has exited
}

// Start starts cmd; its exit closes Done.
func Start(cmd *exec.Cmd) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, Done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.Done) }()
	return p, nil
}

// Stop interrupts the process and waits for it: 10 s, then it is killed.
func (p *Process) Stop() {
	_ = p.Cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.Done:
	case <-time.After(10 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.Done
	}
}
