package incus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"

	incusclient "github.com/lxc/incus/v6/client"
	"github.com/lxc/incus/v6/shared/api"
)

// Instance is what incuslb needs to know of an Incus instance.
type Instance struct {
	Name     string
	Project  string
	Status   string            // "Running", "Stopped", ...
	Location string            // cluster member, "" or "none" when not clustered
	Config   map[string]string // expanded config: the instance's own keys over its profiles'
	// Addresses holds the global IPv4 addresses of each NIC, by the NIC's
	// name inside the instance.
	Addresses map[string][]string
	// Addresses6 holds the global-scope IPv6 addresses of each NIC (unique
	// local fc00::/7 included, as Linux scopes them; link-local never), in
	// canonical form, by the NIC's name inside the instance.
	Addresses6 map[string][]string
}

// Running reports whether the instance runs.
func (i *Instance) Running() bool { return i.Status == "Running" }

// IPv4 returns the first global IPv4 address on nic, or "".
func (i *Instance) IPv4(nic string) string {
	if a := i.Addresses[nic]; len(a) > 0 {
		return a[0]
	}
	return ""
}

// IPv6 returns the first global IPv6 address on nic, or "".
func (i *Instance) IPv6(nic string) string {
	if a := i.Addresses6[nic]; len(a) > 0 {
		return a[0]
	}
	return ""
}

// ListInstances returns the instances of project, in one call, sorted by
// name. With state, each carries its addresses: the server then computes
// every instance's state (~30 ms for a handful of containers here, and as
// much for a filtered list); without it, only name, status and config
// (~5 ms).
func (c *Client) ListInstances(ctx context.Context, project string, state bool) ([]Instance, error) {
	// Incus lists a missing project as empty; say it is missing instead.
	// Checked once per project: projects are rarely deleted under an LB.
	if _, known := c.projects.Load(project); !known {
		if _, _, err := c.in(ctx, "").GetProject(project); err != nil {
			if api.StatusErrorCheck(err, http.StatusNotFound) {
				return nil, fmt.Errorf("project %q does not exist", project)
			}
			return nil, err
		}
		c.projects.Store(project, true)
	}
	var full []api.InstanceFull
	var err error
	if state {
		full, err = c.in(ctx, project).GetInstancesFull(api.InstanceTypeAny)
	} else {
		var plain []api.Instance
		plain, err = c.in(ctx, project).GetInstances(api.InstanceTypeAny)
		for i := range plain {
			full = append(full, api.InstanceFull{Instance: plain[i]})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing instances in project %s: %w", project, err)
	}
	out := make([]Instance, 0, len(full))
	for i := range full {
		out = append(out, fromFull(&full[i], project))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListAllProjects returns every instance, of every project, whose expanded
// config has key set (to any value). One call.
func (c *Client) ListAllProjects(ctx context.Context, key string) ([]Instance, error) {
	full, err := c.in(ctx, "").GetInstancesFullAllProjectsWithFilter(api.InstanceTypeAny, []string{"expanded_config." + key + "=.+"})
	if err != nil {
		return nil, fmt.Errorf("listing instances: %w", err)
	}
	if len(full) == 0 {
		// A cluster that lost a member has been seen to answer a filtered
		// list with [] (HTTP 200) for some seconds while the unfiltered
		// list had every instance: an empty answer is checked unfiltered.
		if full, err = c.in(ctx, "").GetInstancesFullAllProjects(api.InstanceTypeAny); err != nil {
			return nil, fmt.Errorf("listing instances: %w", err)
		}
	}
	out := make([]Instance, 0, len(full))
	for i := range full {
		inst := fromFull(&full[i], full[i].Project)
		if inst.Config[key] != "" {
			out = append(out, inst)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Project != out[j].Project {
			return out[i].Project < out[j].Project
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// GetInstance returns one instance, or an error wrapping ErrNotFound.
// With state it carries its addresses (the server computes its state,
// ~5 ms); without, only name, status, location and config.
func (c *Client) GetInstance(ctx context.Context, project, name string, state bool) (*Instance, error) {
	if !state {
		plain, _, err := c.in(ctx, project).GetInstance(name)
		if err != nil {
			return nil, notFound(err)
		}
		inst := fromFull(&api.InstanceFull{Instance: *plain}, project)
		return &inst, nil
	}
	full, _, err := c.in(ctx, project).GetInstanceFull(name)
	if err != nil {
		return nil, notFound(err)
	}
	inst := fromFull(full, project)
	return &inst, nil
}

func fromFull(f *api.InstanceFull, project string) Instance {
	inst := Instance{
		Name:       f.Name,
		Project:    project,
		Status:     f.Status,
		Location:   f.Location,
		Config:     f.ExpandedConfig,
		Addresses:  map[string][]string{},
		Addresses6: map[string][]string{},
	}
	if inst.Project == "" {
		inst.Project = f.Project
	}
	if f.State != nil {
		for nic, n := range f.State.Network {
			for _, a := range n.Addresses {
				if a.Scope != "global" {
					continue
				}
				switch a.Family {
				case "inet":
					inst.Addresses[nic] = append(inst.Addresses[nic], a.Address)
				case "inet6":
					// Canonical, so that it compares equal to what HAProxy
					// reports (RFC 5952, as inet_ntop writes it).
					if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is6() && !ip.Is4In6() &&
						ip.Zone() == "" && !ip.IsLinkLocalUnicast() {
						inst.Addresses6[nic] = append(inst.Addresses6[nic], ip.String())
					}
				}
			}
		}
	}
	return inst
}

// CreateInstance creates a container from image (a local alias, or
// remote:alias with a remote of the incus CLI configuration such as
// images:debian/12) with the given profiles and config, and starts it. On
// a cluster, target names the member it goes on ("": Incus chooses).
func (c *Client) CreateInstance(ctx context.Context, project, name, image string, profiles []string, config map[string]string, target string) error {
	req := api.InstancesPost{
		Name:        name,
		Type:        api.InstanceTypeContainer,
		InstancePut: api.InstancePut{Profiles: profiles, Config: config},
		Start:       true,
	}
	srv := c.in(ctx, project)
	if target != "" {
		srv = srv.UseTarget(target)
	}
	remote, alias, isRemote := strings.Cut(image, ":")
	if !isRemote {
		req.Source = api.InstanceSource{Type: "image", Alias: image}
		op, err := srv.CreateInstance(req)
		if err := wait(ctx, op, err); err != nil {
			return fmt.Errorf("creating instance %s from image %s: %w", name, image, err)
		}
		return nil
	}
	imgSrv, err := c.conf.GetImageServer(remote)
	if err != nil {
		return fmt.Errorf("image %s: %w", image, err)
	}
	var img api.Image
	if a, _, err := imgSrv.GetImageAlias(alias); err == nil {
		img.Fingerprint = a.Target
	} else {
		img.Fingerprint = alias // simplestreams accepts the alias here
	}
	img.Public = true
	req.Source = api.InstanceSource{Alias: alias}
	rop, err := srv.CreateInstanceFromImage(imgSrv, img, req)
	if err != nil {
		return fmt.Errorf("creating instance %s from image %s: %w", name, image, err)
	}
	if err := waitRemote(ctx, rop); err != nil {
		return fmt.Errorf("creating instance %s from image %s: %w", name, image, err)
	}
	return nil
}

func waitRemote(ctx context.Context, rop incusclient.RemoteOperation) error {
	done := make(chan error, 1)
	go func() { done <- rop.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetState starts, stops (force) or restarts an instance.
func (c *Client) SetState(ctx context.Context, project, name, action string, force bool) error {
	op, err := c.in(ctx, project).UpdateInstanceState(name, api.InstanceStatePut{Action: action, Force: force, Timeout: -1}, "")
	if err := wait(ctx, op, notFound(err)); err != nil {
		return fmt.Errorf("%s instance %s: %w", action, name, err)
	}
	return nil
}

// DeleteInstance stops (force) and deletes an instance; a missing one is
// not an error.
func (c *Client) DeleteInstance(ctx context.Context, project, name string) error {
	if err := c.SetState(ctx, project, name, "stop", true); err != nil && !errors.Is(err, ErrNotFound) &&
		!strings.Contains(err.Error(), "already stopped") && !strings.Contains(err.Error(), "not running") {
		return err
	}
	op, err := c.in(ctx, project).DeleteInstance(name)
	if err := wait(ctx, op, notFound(err)); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("deleting instance %s: %w", name, err)
	}
	return nil
}

// UpdateConfig sets (value != "") or removes (value == "") config keys of
// an instance, retrying when another writer changed it in between.
func (c *Client) UpdateConfig(ctx context.Context, project, name string, keys map[string]string) error {
	return c.update(ctx, project, name, func(put *api.InstancePut) bool {
		changed := false
		for k, v := range keys {
			if put.Config[k] == v {
				continue
			}
			changed = true
			if v == "" {
				delete(put.Config, k)
			} else {
				put.Config[k] = v
			}
		}
		return changed
	})
}

// EnsureDevice adds or replaces a device of an instance unless it already
// has exactly these settings.
func (c *Client) EnsureDevice(ctx context.Context, project, name, device string, settings map[string]string) error {
	return c.update(ctx, project, name, func(put *api.InstancePut) bool {
		if equalMaps(put.Devices[device], settings) {
			return false
		}
		put.Devices[device] = settings
		return true
	})
}

// RemoveDevice removes a device of an instance; a missing one is not an
// error.
func (c *Client) RemoveDevice(ctx context.Context, project, name, device string) error {
	return c.update(ctx, project, name, func(put *api.InstancePut) bool {
		if _, ok := put.Devices[device]; !ok {
			return false
		}
		delete(put.Devices, device)
		return true
	})
}

// update runs a read-modify-write of an instance's writable fields; mutate
// reports whether it changed anything.
func (c *Client) update(ctx context.Context, project, name string, mutate func(*api.InstancePut) bool) error {
	srv := c.in(ctx, project)
	for attempt := 0; attempt < 5; attempt++ {
		inst, etag, err := srv.GetInstance(name)
		if err != nil {
			return notFound(err)
		}
		put := inst.Writable()
		if put.Config == nil {
			put.Config = map[string]string{}
		}
		if put.Devices == nil {
			put.Devices = map[string]map[string]string{}
		}
		if !mutate(&put) {
			return nil
		}
		op, err := srv.UpdateInstance(name, put, etag)
		if api.StatusErrorCheck(err, http.StatusPreconditionFailed) {
			continue
		}
		if err := wait(ctx, op, err); err != nil {
			return fmt.Errorf("updating instance %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("updating instance %s: it kept changing underneath (5 ETag conflicts)", name)
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}
