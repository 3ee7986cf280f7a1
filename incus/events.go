package incus

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/lxc/incus/v6/shared/api"
)

// ActionStopping is not an Incus lifecycle action: it stands for the start
// of a stop or restart operation on an instance (an operation event).
const ActionStopping = "instance-stopping"

// LifecycleEvent is an instance lifecycle event: instance-started,
// instance-stopped, instance-shutdown, instance-deleted, instance-updated...,
// or ActionStopping.
type LifecycleEvent struct {
	Action  string
	Project string
	Name    string
	Time    time.Time
}

// WatchLifecycle delivers the lifecycle events of every project to handle
// until ctx ends or the event stream breaks (the daemon restarted, say),
// and returns why. The client does not reconnect by itself: callers loop,
// with backoff, and resync after every reconnect since events were missed.
// connected is called once the subscription is in place. handle may be
// called from several goroutines at once.
func (c *Client) WatchLifecycle(ctx context.Context, connected func(), handle func(LifecycleEvent)) error {
	l, err := c.srv.GetEventsAllProjects()
	if err != nil {
		return unreachable(c.remote, err)
	}
	defer l.Disconnect()
	_, err = l.AddHandler([]string{api.EventTypeLifecycle}, func(e api.Event) {
		var lc api.EventLifecycle
		if json.Unmarshal(e.Metadata, &lc) != nil || !strings.HasPrefix(lc.Action, "instance-") {
			return
		}
		name, project := lc.Name, lc.Project
		if project == "" {
			project = e.Project
		}
		if name == "" || project == "" {
			n, p := fromSource(lc.Source)
			if name == "" {
				name = n
			}
			if project == "" {
				project = p
			}
		}
		handle(LifecycleEvent{Action: lc.Action, Project: project, Name: name, Time: e.Timestamp})
	})
	if err != nil {
		return err
	}
	// An instance stop (or restart) begins with an operation event, a second
	// or two before instance-shutdown: Incus signals the instance as the
	// operation starts, and its services and network go away meanwhile.
	_, err = l.AddHandler([]string{api.EventTypeOperation}, func(e api.Event) {
		for _, ev := range stopping(e) {
			handle(ev)
		}
	})
	if err != nil {
		return err
	}
	if connected != nil {
		connected()
	}
	done := make(chan error, 1)
	go func() { done <- l.Wait() }()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-done:
		return fmt.Errorf("the Incus event stream closed: %v", err)
	}
}

// stopping reads an operation event: the instances an unfinished stop or
// restart operation is about, as ActionStopping events.
func stopping(e api.Event) []LifecycleEvent {
	var op api.Operation
	if json.Unmarshal(e.Metadata, &op) != nil || op.StatusCode.IsFinal() ||
		(op.Description != "Stopping instance" && op.Description != "Restarting instance") {
		return nil
	}
	var out []LifecycleEvent
	for _, src := range op.Resources["instances"] {
		if name, project := fromSource(src); name != "" {
			out = append(out, LifecycleEvent{Action: ActionStopping, Project: project, Name: name, Time: e.Timestamp})
		}
	}
	return out
}

// fromSource reads name and project from "/1.0/instances/NAME?project=P".
func fromSource(source string) (name, project string) {
	u, err := url.Parse(source)
	if err != nil {
		return "", ""
	}
	name = strings.TrimPrefix(u.Path, "/1.0/instances/")
	if i := strings.Index(name, "/"); i >= 0 {
		name = name[:i]
	}
	project = u.Query().Get("project")
	if project == "" {
		project = "default"
	}
	return name, project
}
