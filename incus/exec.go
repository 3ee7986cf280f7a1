package incus

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

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
	dataDone := make(chan bool)
	args := &api.InstanceExecPost{Command: argv, WaitForWS: true, Environment: map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG": "C.UTF-8",
	}}
	var in io.ReadCloser
	if stdin != nil {
		in = io.NopCloser(bytes.NewReader(stdin))
	}
	// ExecInstance dials the operation's websockets with a handshake
	// timeout of its own that ignores ctx (see untilDone); an exec that
	// started after the caller left is cancelled.
	op, err := untilDone(ctx, func() (incusclient.Operation, error) {
		return c.in(ctx, project).ExecInstance(name, *args, &incusclient.InstanceExecArgs{
			Stdin: in, Stdout: stdout, Stderr: stderr, DataDone: dataDone,
		})
	}, func(op incusclient.Operation) { _ = op.Cancel() })
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), name, notFound(err))
	}
	werr := op.WaitContext(ctx)
	code := -1
	if v, ok := op.Get().Metadata["return"].(float64); ok {
		code = int(v)
	}
	if werr != nil && code == -1 {
		return ExecResult{}, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), name, werr)
	}
	select {
	case <-dataDone:
	case <-ctx.Done():
		return ExecResult{}, ctx.Err()
	}
	if stdout.over || stderr.over {
		return ExecResult{}, fmt.Errorf("exec %q in %s: output larger than %d bytes", strings.Join(argv, " "), name, MaxExecOutput)
	}
	return ExecResult{Code: code, Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}, nil
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
