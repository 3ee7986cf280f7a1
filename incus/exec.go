package incus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"
)

// ExecResult is the outcome of a command run in an instance.
type ExecResult struct {
	Code   int // exit code; 127 when the command does not exist
	Stdout []byte
	Stderr []byte
}

// Output is stdout and stderr together, trimmed, for messages.
func (r ExecResult) Output() string {
	return strings.TrimSpace(string(r.Stdout) + string(r.Stderr))
}

// Exec runs argv in an instance and returns its exit code and output. An
// error means the command could not be run at all; a non-zero exit is not
// an error.
func (c *Client) Exec(ctx context.Context, project, name string, argv []string, stdin []byte) (ExecResult, error) {
	stdout, stderr := &cappedBuffer{max: MaxExecOutput}, &cappedBuffer{max: MaxExecOutput}
	var in io.ReadCloser
	if stdin != nil {
		in = io.NopCloser(bytes.NewReader(stdin))
	}
	code, err := c.exec(ctx, project, name, argv, in, stdout, stderr)
	if err != nil {
		return ExecResult{}, err
	}
	if stdout.over || stderr.over {
		return ExecResult{}, fmt.Errorf("exec %q in %s: output larger than %d bytes", strings.Join(argv, " "), name, MaxExecOutput)
	}
	return ExecResult{Code: code, Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, nil
}

// ExecStream runs argv in an instance and writes its stdout to stdout as
// it comes, for a command that runs until told to stop: it reads stdin,
// which it keeps open until ctx ends, and closing it is how the command
// learns to stop (Incus would leave it running). A non-zero exit is an
// error that carries the (capped) stderr.
func (c *Client) ExecStream(ctx context.Context, project, name string, argv []string, stdin []byte, stdout io.Writer) error {
	stderr := &cappedBuffer{max: 64 << 10}
	pr, pw := io.Pipe()
	defer pr.Close() // unblocks the write below if the command never read
	// The command's end is waited for beyond ctx (it ends once stdin
	// closes), for a bounded time.
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		_, _ = pw.Write(stdin)
		select {
		case <-wctx.Done():
		case <-ctx.Done():
		}
		_ = pw.Close()
		select {
		case <-wctx.Done():
		case <-time.After(streamStopWait):
			cancel()
		}
	}()
	code, err := c.exec(wctx, project, name, argv, pr, stdout, stderr)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	if code != 0 && ctx.Err() == nil {
		return fmt.Errorf("exec %q in %s: exit %d: %s", strings.Join(argv, " "), name, code, strings.TrimSpace(stderr.String()))
	}
	return ctx.Err()
}

// streamStopWait bounds how long ExecStream waits for its command to end
// once stdin is closed.
const streamStopWait = 5 * time.Second

// exec runs argv with the given streams and returns its exit code.
func (c *Client) exec(ctx context.Context, project, name string, argv []string, in io.ReadCloser, stdout, stderr io.Writer) (int, error) {
	dataDone := make(chan bool)
	args := &api.InstanceExecPost{Command: argv, WaitForWS: true, Environment: map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG": "C.UTF-8",
	}}
	// ExecInstance dials the operation's websockets with a handshake
	// timeout of its own that ignores ctx (see untilDone); an exec that
	// started after the caller left is cancelled.
	op, err := untilDone(ctx, func() (incusclient.Operation, error) {
		return c.in(ctx, project).ExecInstance(name, *args, &incusclient.InstanceExecArgs{
			Stdin: in, Stdout: stdout, Stderr: stderr, DataDone: dataDone,
		})
	}, func(op incusclient.Operation) { _ = op.Cancel() })
	if err != nil {
		return -1, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), name, notFound(err))
	}
	werr := op.WaitContext(ctx)
	code := -1
	if v, ok := op.Get().Metadata["return"].(float64); ok {
		code = int(v)
	}
	if werr != nil && code == -1 {
		return -1, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), name, werr)
	}
	select {
	case <-dataDone:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	return code, nil
}

// MaxExecOutput caps what is kept of a command's stdout and of its stderr.
const MaxExecOutput = 8 << 20

// cappedBuffer keeps the first max bytes written to it and notes that more
// came; writes never fail, so the command is not disturbed.
type cappedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
