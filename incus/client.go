package incus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"syscall"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"
	"github.com/lxc/incus/v6/shared/cliconfig"
)

// ErrNotFound is returned (wrapped) when an instance or file does not exist.
var ErrNotFound = errors.New("not found")

// Client talks to one Incus server (or cluster).
type Client struct {
	srv    incusclient.InstanceServer
	conf   *cliconfig.Config // for remote image servers such as images:
	remote string            // "" for the local unix socket

	projects sync.Map // projects known to exist
}

// Connect connects to the local unix socket when remote is "", or else to
// the remote of that name in the incus CLI's configuration
// (~/.config/incus/config.yml, with its client certificate).
func Connect(ctx context.Context, remote string) (*Client, error) {
	conf, err := cliconfig.LoadConfig("")
	if err != nil {
		return nil, fmt.Errorf("reading the incus client configuration: %w", err)
	}
	var srv incusclient.InstanceServer
	if remote == "" {
		srv, err = incusclient.ConnectIncusUnixWithContext(ctx, "", nil)
	} else {
		srv, err = conf.GetInstanceServer(remote)
	}
	if err != nil {
		return nil, unreachable(remote, err)
	}
	return &Client{srv: srv, conf: conf, remote: remote}, nil
}

// Name describes the server for messages.
func (c *Client) Name() string {
	if c.remote == "" {
		return "local Incus (unix socket)"
	}
	return "Incus remote " + c.remote
}

// Local reports whether the client talks to the daemon on this host, so
// that host-side unix sockets of proxy devices can be reached.
func (c *Client) Local() bool { return c.remote == "" }

// LocalMember reports whether an instance at location (its cluster member,
// "" or "none" when not clustered) runs on the member this client talks to.
func (c *Client) LocalMember(ctx context.Context, location string) bool {
	if location == "" || location == "none" {
		return true
	}
	srv, _, err := c.in(ctx, "").GetServer()
	if err != nil {
		return true // cannot tell: try the local socket, exec is the fallback on failure
	}
	return srv.Environment.ServerName == location
}

func unreachable(remote string, err error) error {
	where := "the local unix socket"
	if remote != "" {
		where = "remote " + remote
	}
	hint := ""
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		hint = " (is incusd running?)"
	}
	return fmt.Errorf("cannot reach Incus at %s%s: %w", where, hint, err)
}

// in returns a client scoped to project whose requests end with ctx: a
// fresh copy every time (UseProject copies the connection; WithContext
// then sets the context of that copy only), so concurrent passes with
// their own deadlines never share one.
func (c *Client) in(ctx context.Context, project string) incusclient.InstanceServer {
	srv := c.srv.UseProject(project)
	if wc, ok := srv.(interface {
		WithContext(context.Context) incusclient.InstanceServer
	}); ok {
		return wc.WithContext(ctx)
	}
	return srv
}

// notFound maps a 404 from Incus to ErrNotFound, keeping the message.
func notFound(err error) error {
	if api.StatusErrorCheck(err, http.StatusNotFound) {
		return fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	return err
}

// wait waits for an operation, giving up (but not cancelling it) when ctx ends.
func wait(ctx context.Context, op incusclient.Operation, err error) error {
	if err != nil {
		return err
	}
	return op.WaitContext(ctx)
}
