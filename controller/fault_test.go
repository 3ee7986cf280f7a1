package controller

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
)

// faultIncus makes one method of the fake Incus fail, hang until its
// context ends, or answer 30 s late.
type faultIncus struct {
	*fakeIncus
	method, mode string
	hit          bool
}

// Local: the host-side sockets are tried (and found missing), so the
// proxy devices are reset too.
func (f *faultIncus) Local() bool { return true }

func (f *faultIncus) fault(ctx context.Context, method string) error {
	if method != f.method {
		return nil
	}
	f.hit = true
	switch f.mode {
	case "error":
		return errors.New("injected failure")
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	}
	select { // delay
	case <-time.After(30 * time.Second):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *faultIncus) GetInstance(ctx context.Context, p, n string, s bool) (*incus.Instance, error) {
	if err := f.fault(ctx, "GetInstance"); err != nil {
		return nil, err
	}
	return f.fakeIncus.GetInstance(ctx, p, n, s)
}
func (f *faultIncus) CreateInstance(ctx context.Context, p, n, i string, pr []string, c map[string]string, t string) error {
	if err := f.fault(ctx, "CreateInstance"); err != nil {
		return err
	}
	return f.fakeIncus.CreateInstance(ctx, p, n, i, pr, c, t)
}
func (f *faultIncus) SetState(ctx context.Context, p, n, a string, force bool) error {
	if err := f.fault(ctx, "SetState"); err != nil {
		return err
	}
	return f.fakeIncus.SetState(ctx, p, n, a, force)
}
func (f *faultIncus) UpdateConfig(ctx context.Context, p, n string, k map[string]string) error {
	if err := f.fault(ctx, "UpdateConfig"); err != nil {
		return err
	}
	return f.fakeIncus.UpdateConfig(ctx, p, n, k)
}
func (f *faultIncus) EnsureDevice(ctx context.Context, p, n, d string, s map[string]string) error {
	if err := f.fault(ctx, "EnsureDevice"); err != nil {
		return err
	}
	return f.fakeIncus.EnsureDevice(ctx, p, n, d, s)
}
func (f *faultIncus) RemoveDevice(ctx context.Context, p, n, d string) error {
	if err := f.fault(ctx, "RemoveDevice"); err != nil {
		return err
	}
	return f.fakeIncus.RemoveDevice(ctx, p, n, d)
}
func (f *faultIncus) ListInstances(ctx context.Context, p string, s bool) ([]incus.Instance, error) {
	if err := f.fault(ctx, "ListInstances"); err != nil {
		return nil, err
	}
	return f.fakeIncus.ListInstances(ctx, p, s)
}
func (f *faultIncus) ReadFile(ctx context.Context, p, n, file string) ([]byte, error) {
	if err := f.fault(ctx, "ReadFile"); err != nil {
		return nil, err
	}
	return f.fakeIncus.ReadFile(ctx, p, n, file)
}
func (f *faultIncus) WriteFile(ctx context.Context, p, n, file string, d []byte, m incus.FileMode) error {
	if err := f.fault(ctx, "WriteFile"); err != nil {
		return err
	}
	return f.fakeIncus.WriteFile(ctx, p, n, file, d, m)
}
func (f *faultIncus) WriteTemp(ctx context.Context, p, n, file string, d []byte, m incus.FileMode) (string, error) {
	if err := f.fault(ctx, "WriteTemp"); err != nil {
		return "", err
	}
	return f.fakeIncus.WriteTemp(ctx, p, n, file, d, m)
}
func (f *faultIncus) Rename(ctx context.Context, p, n, from, to string) error {
	if err := f.fault(ctx, "Rename"); err != nil {
		return err
	}
	return f.fakeIncus.Rename(ctx, p, n, from, to)
}
func (f *faultIncus) Remove(ctx context.Context, p, n, file string) error {
	if err := f.fault(ctx, "Remove"); err != nil {
		return err
	}
	return f.fakeIncus.Remove(ctx, p, n, file)
}
func (f *faultIncus) Mkdir(ctx context.Context, p, n, d string, m incus.FileMode) error {
	if err := f.fault(ctx, "Mkdir"); err != nil {
		return err
	}
	return f.fakeIncus.Mkdir(ctx, p, n, d, m)
}
func (f *faultIncus) Exec(ctx context.Context, p, n string, argv []string, stdin []byte) (incus.ExecResult, error) {
	if err := f.fault(ctx, "Exec"); err != nil {
		return incus.ExecResult{}, err
	}
	return f.fakeIncus.Exec(ctx, p, n, argv, stdin)
}
func (f *faultIncus) DeleteInstance(ctx context.Context, p, n string) error {
	if err := f.fault(ctx, "DeleteInstance"); err != nil {
		return err
	}
	return f.fakeIncus.DeleteInstance(ctx, p, n)
}
func (f *faultIncus) LocalMember(ctx context.Context, location string) bool {
	if f.fault(ctx, "LocalMember") != nil {
		return true
	}
	return true
}

// Every Incus method in turn fails, hangs, or answers 30 s late, in a pass
// that creates the LB instance and loads its first config (it calls them
// all but DeleteInstance, which only prune calls, and WriteFile, which only
// runtime-path passes and a put-back call). The pass ends by its
// deadline (plus the bounded status write), HAProxy runs either what it
// ran or the desired config, never a half, and once the fault is gone the
// next pass converges.
func TestAPassEndsByItsDeadlineWhateverIncusDoes(t *testing.T) {
	methods := []string{"GetInstance", "CreateInstance", "SetState", "UpdateConfig", "EnsureDevice", "RemoveDevice",
		"ListInstances", "ReadFile", "WriteFile", "WriteTemp", "Rename", "Remove", "Mkdir", "Exec", "LocalMember"}
	const deadline = 300 * time.Millisecond
	for _, method := range methods {
		for _, mode := range []string{"error", "hang", "delay"} {
			t.Run(method+"/"+mode, func(t *testing.T) {
				t.Parallel()
				f := newFake()
				f.inst.Status = "" // does not exist: the pass creates it
				if method == "SetState" {
					f.inst.Status = "Stopped" // exists, stopped: the pass starts it
				}
				f.members = []incus.Instance{member("api-1", "10.0.0.11")}
				fi := &faultIncus{fakeIncus: f, method: method, mode: mode}
				a := &Applier{Incus: fi, Log: logr.Discard(), PassTimeout: deadline, SocketDir: t.TempDir()}
				lb := testLB(t, true)
				start := time.Now()
				_, err := a.Apply(context.Background(), lb, false)
				if took := time.Since(start); took > deadline+recordTimeout+time.Second {
					t.Fatalf("the pass took %v (err %v)", took, err)
				}
				desired := ""
				if f.hap.loaded != nil && haproxy.ClaimedHash(f.hap.loaded) != "" {
					desired = "desired"
				}
				if err == nil && desired == "" {
					t.Fatalf("no error, yet HAProxy does not run an incuslb config")
				}
				if !fi.hit && method != "WriteFile" {
					t.Fatalf("the pass never called %s", method)
				}
				fi.method = ""
				if _, err := a.Apply(context.Background(), lb, false); err != nil {
					t.Fatalf("after the fault: %v", err)
				}
				if ready(f) != "True" {
					t.Fatalf("not Ready after the fault: %v", f.inst.Config)
				}
			})
		}
	}
}
