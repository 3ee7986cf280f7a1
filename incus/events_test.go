package incus

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/lxc/incus/v6/shared/api"
)

// TestStoppingReadsStopOperations: the operation events of `incus stop`
// and `incus restart` (as Incus 6.0 sends them, captured with `incus
// monitor --type=operation`) name the instance while they run, and nothing
// else does.
func TestStoppingReadsStopOperations(t *testing.T) {
	at := time.Date(2026, 11, 24, 9, 42, 21, 0, time.UTC)
	event := func(description, status string, code int, resources ...string) api.Event {
		md, _ := json.Marshal(map[string]any{
			"class": "task", "description": description, "status": status, "status_code": code,
			"resources": map[string][]string{"instances": resources},
		})
		return api.Event{Type: api.EventTypeOperation, Timestamp: at, Project: "p", Metadata: md}
	}
	for _, c := range []struct {
		name string
		ev   api.Event
		want []LifecycleEvent
	}{
		{"a stop, running", event("Stopping instance", "Running", 103, "/1.0/instances/api-1?project=p"),
			[]LifecycleEvent{{Action: ActionStopping, Project: "p", Name: "api-1", Time: at}}},
		{"a restart, pending, default project", event("Restarting instance", "Pending", 105, "/1.0/instances/api-2"),
			[]LifecycleEvent{{Action: ActionStopping, Project: "default", Name: "api-2", Time: at}}},
		{"a stop that finished", event("Stopping instance", "Success", 200, "/1.0/instances/api-1?project=p"), nil},
		{"a stop that failed", event("Stopping instance", "Failure", 400, "/1.0/instances/api-1?project=p"), nil},
		{"a start", event("Starting instance", "Running", 103, "/1.0/instances/api-1?project=p"), nil},
		{"an exec", event("Executing command", "Running", 103, "/1.0/instances/api-1?project=p"), nil},
		{"garbage", api.Event{Type: api.EventTypeOperation, Metadata: []byte("{")}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := stopping(c.ev)
			if len(got) != len(c.want) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("got %+v, want %+v", got[i], c.want[i])
				}
			}
		})
	}
}
