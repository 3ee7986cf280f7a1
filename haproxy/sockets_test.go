package haproxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// localRun runs the perl client here, as Incus would in the instance.
func localRun(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	return cmd.Output()
}

// localStream runs it with stdin open until ctx ends, as incus.ExecStream.
func localStream(ctx context.Context, argv []string, stdin []byte, stdout io.Writer) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	_, _ = in.Write(stdin)
	go func() { <-ctx.Done(); in.Close() }()
	return cmd.Wait()
}

func needPerl(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("no perl here")
	}
}

// serveOnce answers one connection: it reads a line, then writes answer
// and closes, or, with hold, keeps the connection open until it is closed
// by the other side.
func serveOnce(t *testing.T, ln net.Listener, answer string, hold bool) <-chan string {
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		got <- line
		_, _ = io.WriteString(conn, answer)
		if hold {
			_, _ = io.Copy(io.Discard, conn)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return got
}

// The one perl client speaks to a unix socket and to a TCP address.
func TestPerlClientUnixAndTCP(t *testing.T) {
	needPerl(t)
	path := filepath.Join(t.TempDir(), "admin.sock")
	uln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	tln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ln   net.Listener
		addr string
	}{{uln, path}, {tln, tln.Addr().String()}} {
		got := serveOnce(t, tc.ln, "answer 1\nanswer 2\n", false)
		out, err := ExecSocket{Path: tc.addr, Run: localRun}.Exchange(context.Background(), "show info\n")
		if err != nil {
			t.Fatalf("%s: %v", tc.addr, err)
		}
		if out != "answer 1\nanswer 2\n" || <-got != "show info\n" {
			t.Errorf("%s: answer %q", tc.addr, out)
		}
	}
	_, err = ExecSocket{Path: filepath.Join(t.TempDir(), "none.sock"), Run: localRun}.Exchange(context.Background(), "x\n")
	if err == nil {
		t.Error("no error for a socket that is not there")
	}
}

// Following ends when the caller's context ends, with the perl client: it
// learns it from its stdin closing, as Incus would not stop it.
func TestPerlClientFollowStopsWithStdin(t *testing.T) {
	needPerl(t)
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	got := serveOnce(t, ln, "line 1\n", true)
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var lines []string
	lw := &LineWriter{Line: func(l string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l)
		cancel()
	}}
	done := make(chan error, 1)
	go func() {
		done <- ExecSocket{Path: path, Run: localRun, Stream: localStream}.Follow(ctx, "show events r -w\n", lw)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Follow did not end with its context")
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(lines, "|") != "line 1" || <-got != "show events r -w\n" {
		t.Errorf("lines %q", lines)
	}
}

// The unix socket route follows until the context ends as well.
func TestUnixSocketFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	serveOnce(t, ln, "a\nb\n", true)
	ctx, cancel := context.WithCancel(context.Background())
	var lines []string
	lw := &LineWriter{Line: func(l string) {
		lines = append(lines, l)
		if len(lines) == 2 {
			cancel()
		}
	}}
	if err := UnixSocket(path).Follow(ctx, "show events r -w\n", lw); err != nil {
		t.Fatal(err)
	}
	if strings.Join(lines, "|") != "a|b" {
		t.Errorf("lines %q", lines)
	}
}
