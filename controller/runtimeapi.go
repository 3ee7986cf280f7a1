package controller

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// Paths of the proxy-device sockets on the host for an LB instance.
func (a *Applier) sockets(lb *specs.LoadBalancer) (admin, master string) {
	dir := a.SocketDir
	if dir == "" {
		dir = "/run/incuslb"
	}
	base := filepath.Join(dir, lb.Spec.Instance.Project+"_"+lb.Spec.Instance.Name)
	return base + ".admin.sock", base + ".master.sock"
}

// Runtime returns the runtime API of the LB's HAProxy: through the proxy
// devices' sockets on this host (0.2 ms a round trip) when the instance
// runs here, else through exec in the instance (the instance is on another
// cluster member, Incus is remote, or ExecRuntime is set).
func (a *Applier) Runtime(lb *specs.LoadBalancer) *haproxy.Runtime {
	in := lb.Spec.Instance
	if a.Incus.Local() && !a.ExecRuntime && !a.elsewhere.has(in.Project+"/"+in.Name) {
		admin, master := a.sockets(lb)
		return &haproxy.Runtime{Admin: haproxy.UnixDialer(admin), Master: haproxy.UnixDialer(master)}
	}
	return a.execRuntime(lb)
}

// execRuntime reaches HAProxy's sockets by running a small perl client in
// the instance (perl-base is Essential in Debian).
func (a *Applier) execRuntime(lb *specs.LoadBalancer) *haproxy.Runtime {
	in := lb.Spec.Instance
	run := a.execRun(lb)
	admin := haproxy.ExecSocket{Path: haproxy.AdminSocket, Run: run}
	if s, ok := a.Incus.(execStreamer); ok {
		admin.Stream = func(ctx context.Context, argv []string, stdin []byte, stdout io.Writer) error {
			return s.ExecStream(ctx, in.Project, in.Name, argv, stdin, stdout)
		}
	}
	return &haproxy.Runtime{
		Admin:  admin,
		Master: haproxy.ExecSocket{Path: haproxy.MasterSocket, Run: run},
	}
}

// execStreamer is the optional side of the Incus client that runs a
// command whose output comes as it runs (incuslb logs -f through exec).
type execStreamer interface {
	ExecStream(ctx context.Context, project, name string, argv []string, stdin []byte, stdout io.Writer) error
}

// ExecIn is a route into the LB's instance for a TCP service that listens
// on the instance's loopback (the stats frontend): a perl client run
// through exec for each exchange.
func (a *Applier) ExecIn(lb *specs.LoadBalancer, addr string) haproxy.ExecSocket {
	return haproxy.ExecSocket{Path: addr, Run: a.execRun(lb)}
}

// execRun runs a command in the LB's instance: its stdout, or an error
// with its stderr when it exits non-zero.
func (a *Applier) execRun(lb *specs.LoadBalancer) func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
	in := lb.Spec.Instance
	return func(ctx context.Context, argv []string, stdin []byte) ([]byte, error) {
		res, err := a.Incus.Exec(ctx, in.Project, in.Name, argv, stdin)
		if err != nil {
			return nil, err
		}
		if res.Code != 0 {
			return res.Stdout, fmt.Errorf("exit %d: %s", res.Code, strings.TrimSpace(string(res.Stderr)))
		}
		return res.Stdout, nil
	}
}

// hostRuntime is the route through the host-side sockets, and whether the
// master answers on it: a read, beside the instance read at the start of
// a pass (it execs nothing in the instance, which may not be this LB's).
func (a *Applier) hostRuntime(ctx context.Context, lb *specs.LoadBalancer) (*haproxy.Runtime, bool) {
	rt := a.Runtime(lb)
	if _, isUnix := rt.Master.(haproxy.UnixSocket); !isUnix {
		return rt, false
	}
	_, err := rt.ShowProc(ctx)
	return rt, err == nil
}

// runtimeFor picks the route for a pass. When the host-side socket does not
// answer, the exec route is tried before HAProxy is taken for stopped: the
// proxy device may be what is broken (its socket removed with /run). And
// since a master that re-executes itself (a reload under way) answers
// nothing for up to a few seconds, both are tried for masterWait before
// the pass concludes that HAProxy is not running. It returns whether the
// host route was found broken.
func (a *Applier) runtimeFor(ctx context.Context, lb *specs.LoadBalancer) (rt *haproxy.Runtime, hostBroken bool) {
	rt = a.Runtime(lb)
	_, isUnix := rt.Master.(haproxy.UnixSocket)
	deadline := time.Now().Add(masterWait)
	for {
		if _, err := rt.ShowProc(ctx); err == nil {
			return rt, false
		}
		if isUnix {
			ex := a.execRuntime(lb)
			if _, err := ex.ShowProc(ctx); err == nil {
				return ex, true
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return rt, false
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// masterWait is how long a master that does not answer gets before
// HAProxy is taken for stopped (a 2.6 master re-executing answers nothing
// for about 0.1 s after a good reload, 2.2 s after a failed one).
const masterWait = 3 * time.Second
