package controller

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

// scaleIncus is a fake Incus with n labelled running instances, counting
// the list calls a pass makes.
type scaleIncus struct {
	*fakeIncus
	listCalls atomic.Int64
}

func (s *scaleIncus) ListInstances(ctx context.Context, project string, state bool) ([]incus.Instance, error) {
	s.listCalls.Add(1)
	return s.fakeIncus.ListInstances(ctx, project, state)
}

func newScale(n int) *scaleIncus {
	f := newFake()
	f.members = make([]incus.Instance, n)
	for i := range f.members {
		f.members[i] = incus.Instance{
			Name: fmt.Sprintf("api-%05d", i), Project: "default", Status: "Running",
			Config:    map[string]string{"user.role": "api"},
			Addresses: map[string][]string{"eth0": {fmt.Sprintf("10.%d.%d.%d", 1+i/65536, (i/256)%256, i%256)}},
		}
	}
	return &scaleIncus{fakeIncus: f}
}

func scaleLB() *specs.LoadBalancer {
	lb := &specs.LoadBalancer{APIVersion: specs.APIVersion, Kind: specs.Kind, Metadata: specs.ObjectMeta{Name: "edge"},
		Spec: specs.LoadBalancerSpec{
			Instance: specs.InstanceSpec{Name: "lb"},
			Routes:   []specs.Route{{Pool: "api"}},
			Pools:    []specs.Pool{{Name: "api", Selector: map[string]string{"user.role": "api"}, Port: 8080, Sticky: &specs.Sticky{Cookie: "S"}}},
		}}
	specs.SetDefaults(lb)
	return lb
}

// BenchmarkReconcile10k is one steady-state pass (nothing to change) over
// 10,000 labelled instances: list, assign, render, compare. It reports the
// Incus list calls per pass, which must not grow with the instances.
func BenchmarkReconcile10k(b *testing.B) {
	f := newScale(10000)
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := scaleLB()
	if _, err := a.Apply(context.Background(), lb, false); err != nil { // converge once
		b.Fatal(err)
	}
	f.listCalls.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		plan, err := a.Apply(context.Background(), lb, false)
		if err != nil || plan.Changed() {
			b.Fatalf("steady pass changed something: %v %+v", err, plan.Reload)
		}
	}
	b.ReportMetric(float64(f.listCalls.Load())/float64(b.N), "lists/op")
	b.ReportMetric(float64(peakRSS())/(1<<20), "peakRSS-MiB")
}

// BenchmarkReconcile10kOneJoin is a pass where one of 10,000 members
// changes (it is rendered and compared in full).
func BenchmarkReconcile10kOneJoin(b *testing.B) {
	f := newScale(10000)
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := scaleLB()
	if _, err := a.Apply(context.Background(), lb, false); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.members[i%len(f.members)].Status = map[bool]string{true: "Stopped", false: "Running"}[i%2 == 0]
		if _, err := a.Apply(context.Background(), lb, false); err != nil {
			b.Fatal(err)
		}
	}
}

// peakRSS is this process's peak resident set size, in bytes (VmHWM).
func peakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
