package haproxy

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// An answer larger than MaxAnswer is refused, and not read past the cap.
func TestUnixSocketCapsTheAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		chunk := []byte(strings.Repeat("x", 64<<10))
		for sent := 0; sent <= MaxAnswer+len(chunk); sent += len(chunk) {
			if _, err := conn.Write(chunk); err != nil {
				return
			}
		}
	}()
	_, err = UnixSocket(path).Exchange(context.Background(), "show servers state\n")
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v", err)
	}
}
