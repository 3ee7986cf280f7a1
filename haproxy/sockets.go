package haproxy

import (
	"context"
	"fmt"
	"io"
	"net"
)

// Socket is one of HAProxy's sockets: it sends a payload and returns the
// whole answer.
type Socket interface {
	Exchange(ctx context.Context, payload string) (string, error)
}

// UnixSocket is a unix socket reachable from here: the host side of an
// Incus proxy device that forwards to the socket in the container.
type UnixSocket string

// UnixDialer returns the unix socket at path.
func UnixDialer(path string) Socket { return UnixSocket(path) }

// Exchange writes payload and reads until HAProxy closes the connection.
// The write side is never half-closed: an Incus proxy device would drop
// the answer.
func (u UnixSocket) Exchange(ctx context.Context, payload string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", string(u))
	if err != nil {
		return "", fmt.Errorf("runtime API: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, payload); err != nil {
		return "", fmt.Errorf("runtime API: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(conn, MaxAnswer+1))
	if err != nil {
		return string(out), fmt.Errorf("runtime API: %w", err)
	}
	if len(out) > MaxAnswer {
		return "", fmt.Errorf("runtime API: the answer to %q is larger than %d bytes", firstLine(payload), MaxAnswer)
	}
	return string(out), nil
}

// ExecSocket reaches a socket inside the container by running a small perl
// client there (perl-base is Essential in Debian; the image has no socat):
// for when the host side of the proxy device is out of reach, because the
// instance runs on another cluster member or Incus is remote. About 30 ms
// an exchange instead of 0.2 ms. Path is a unix socket's path, or a TCP
// address (HOST:PORT) such as the stats frontend's 127.0.0.1:9100.
type ExecSocket struct {
	Path string // in the container
	// Run runs argv in the instance with stdin and returns its stdout, or an
	// error that includes stderr when it exits non-zero.
	Run func(ctx context.Context, argv []string, stdin []byte) ([]byte, error)
	// Stream, when set, runs argv in the instance with stdin open until ctx
	// ends, and writes its stdout to stdout as it comes (see Follow).
	Stream func(ctx context.Context, argv []string, stdin []byte, stdout io.Writer) error
}

// perlClient connects to ARGV[0] (a unix socket's path, or HOST:PORT),
// sends stdin and prints the answer as it comes, until the peer closes.
// With ARGV[1] = "follow" it sends the first line of stdin only and also
// ends when stdin closes: that is how a caller stops a command that does
// not end by itself (Incus leaves a command running when its caller goes).
// Otherwise it gives up after a minute.
const perlClient = `use IO::Socket::UNIX; use IO::Socket::INET; use IO::Select;
my ($peer, $mode) = @ARGV; my $follow = ($mode // "") eq "follow";
my $s = $peer =~ m{^/} ? IO::Socket::UNIX->new(Peer => $peer) : IO::Socket::INET->new(PeerAddr => $peer, Proto => "tcp");
die "connect $peer: $!\n" unless $s;
$| = 1; alarm 60 unless $follow;
my $in; if ($follow) { $in = <STDIN> } else { local $/; $in = <STDIN> }
print $s $in if defined $in;
my $sel = IO::Select->new($s); $sel->add(\*STDIN) if $follow;
while (my @r = $sel->can_read) { for my $h (@r) { my $n = sysread($h, my $b, 65536); exit 0 unless $n; print $b if $h == $s } }`

// Exchange implements Socket.
func (e ExecSocket) Exchange(ctx context.Context, payload string) (string, error) {
	out, err := e.Run(ctx, []string{"perl", "-e", perlClient, e.Path}, []byte(payload))
	if err != nil {
		return string(out), fmt.Errorf("runtime API through exec: %w", err)
	}
	return string(out), nil
}

// Follow implements Follower.
func (e ExecSocket) Follow(ctx context.Context, line string, w io.Writer) error {
	if e.Stream == nil {
		return fmt.Errorf("runtime API through exec: this route cannot follow")
	}
	if err := e.Stream(ctx, []string{"perl", "-e", perlClient, e.Path, "follow"}, []byte(line), w); err != nil && ctx.Err() == nil {
		return fmt.Errorf("runtime API through exec: %w", err)
	}
	return nil
}

// Follower is a socket that can hand over an answer as it comes, for a
// command that does not end by itself (`show events RING -w`).
type Follower interface {
	// Follow sends one line and writes the answer to w until the peer
	// closes (nil) or ctx ends (nil as well: ending it is the caller's way
	// to stop).
	Follow(ctx context.Context, line string, w io.Writer) error
}

// Follow implements Follower.
func (u UnixSocket) Follow(ctx context.Context, line string, w io.Writer) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", string(u))
	if err != nil {
		return fmt.Errorf("runtime API: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, line); err != nil {
		return fmt.Errorf("runtime API: %w", err)
	}
	if _, err := io.Copy(w, conn); err != nil && ctx.Err() == nil {
		return fmt.Errorf("runtime API: %w", err)
	}
	return nil
}
