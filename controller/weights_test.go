package controller

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/go-logr/logr"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/incus"
	"github.com/incuslb/incuslb/specs"
)

func TestPoolWeights(t *testing.T) {
	stable := func(w int) memberLabels { return memberLabels{weight: w} }
	canary := func(w int) memberLabels { return memberLabels{weight: w, canary: true} }
	for _, tc := range []struct {
		name    string
		labels  map[string]memberLabels
		percent int
		want    string
	}{
		{"no labels: HAProxy's default", map[string]memberLabels{"a": stable(100), "b": stable(100)}, -1, "a=1 b=1"},
		{"a label halves one", map[string]memberLabels{"a": stable(100), "b": stable(50)}, -1, "a=2 b=1"},
		{"weight 0", map[string]memberLabels{"a": stable(100), "b": stable(0)}, -1, "a=1 b=0"},
		{"all 0", map[string]memberLabels{"a": stable(0), "b": stable(0)}, -1, "a=0 b=0"},
		{"odd labels", map[string]memberLabels{"a": stable(7), "b": stable(256)}, -1, "a=7 b=256"},
		{"canary 20% of 2+1", map[string]memberLabels{"a": stable(100), "b": stable(100), "c": canary(100)}, 20, "a=2 b=2 c=1"},
		{"canary 50% of 2+1", map[string]memberLabels{"a": stable(100), "b": stable(100), "c": canary(100)}, 50, "a=1 b=1 c=2"},
		{"canary 10% of 1+1", map[string]memberLabels{"a": stable(100), "c": canary(100)}, 10, "a=9 c=1"},
		{"canary 0%", map[string]memberLabels{"a": stable(100), "c": canary(100)}, 0, "a=1 c=0"},
		{"canary 100%", map[string]memberLabels{"a": stable(100), "c": canary(100)}, 100, "a=0 c=1"},
		{"labels scale within their group", map[string]memberLabels{"a": stable(100), "b": stable(50), "c": canary(100), "d": canary(100)}, 40, "a=2 b=1 c=1 d=1"},
		{"no canary running: the others take all", map[string]memberLabels{"a": stable(100), "b": stable(50)}, 30, "a=2 b=1"},
		{"only canaries", map[string]memberLabels{"c": canary(100)}, 30, "c=1"},
		{"a tiny share keeps a weight", map[string]memberLabels{"a": stable(256), "c": canary(1)}, 1, "a=99 c=1"},
		{"scaled down to 256", map[string]memberLabels{"a": stable(255), "b": stable(254), "c": canary(253)}, 33, "a=256 b=255 c=252"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := poolWeights(tc.labels, tc.percent)
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(got)) {
				parts = append(parts, fmt.Sprintf("%s=%d", k, got[k]))
			}
			if s := strings.Join(parts, " "); s != tc.want {
				t.Errorf("got %s, want %s", s, tc.want)
			}
		})
	}
}

func TestWeightLabel(t *testing.T) {
	for _, tc := range []struct {
		value   string // "-" for no label
		want    int
		problem string
	}{
		{"-", specs.DefaultWeight, ""},
		{"0", 0, ""},
		{"256", 256, ""},
		{" 42 ", 42, ""},
		{"257", specs.DefaultWeight, `instance default/api-1: user.incuslb.weight="257" must be an integer from 0 to 256; it weighs 100`},
		{"-1", specs.DefaultWeight, `user.incuslb.weight="-1" must be`},
		{"heavy", specs.DefaultWeight, `user.incuslb.weight="heavy" must be`},
		{"1.5", specs.DefaultWeight, `user.incuslb.weight="1.5" must be`},
	} {
		inst := member("api-1", "10.0.0.11")
		if tc.value != "-" {
			inst.Config[specs.WeightKey] = tc.value
		}
		w, problem := weightLabel(inst)
		if w != tc.want || (tc.problem == "") != (problem == "") || !strings.Contains(problem, tc.problem) {
			t.Errorf("%q: got %d %q, want %d %q", tc.value, w, problem, tc.want, tc.problem)
		}
	}
}

// canaryLB is testLB with a canary on its pool.
func canaryLB(t *testing.T, percent int) *specs.LoadBalancer {
	lb := testLB(t, false)
	lb.Spec.Pools[0].Canary = &specs.Canary{Selector: map[string]string{"user.role": "api-canary"}, Percent: percent}
	if errs := specs.Validate(lb); len(errs) > 0 {
		t.Fatal(errs)
	}
	return lb
}

func weightsOf(f *fakeIncus) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(f.hap.table())) {
		if s := f.hap.table()[k]; !haproxy.IsParked(s.addr, s.port) {
			parts = append(parts, fmt.Sprintf("%s=%d", s.srv, s.weight))
		}
	}
	return strings.Join(parts, " ")
}

// Weights and the canary's split go through the runtime API: no reload,
// the same config hash; a reload's new worker gets them too.
func TestWeightsGoThroughTheRuntimeAPI(t *testing.T) {
	f := newFake()
	c := member("api-c", "10.0.0.13")
	c.Config["user.role"] = "api-canary"
	f.members = []incus.Instance{member("api-1", "10.0.0.11"), member("api-2", "10.0.0.12"), c}
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := canaryLB(t, 20)
	if p := apply(t, a, lb); p.Reload != ReloadFirstConfig {
		t.Fatalf("first pass: %+v", p)
	}
	if got := weightsOf(f); got != "srv1=2 srv2=2 srv3=1" {
		t.Fatalf("after the first reload: %s", got)
	}
	hash, reloads := haproxy.ClaimedHash(f.hap.loaded), f.hap.reloads
	if p := apply(t, a, lb); p.Changed() {
		t.Fatalf("second pass changed something: %v", p)
	}

	steps := []struct {
		name    string
		change  func()
		weights string
		runtime string
	}{
		{"the split moves", func() { lb.Spec.Pools[0].Canary.Percent = 50 }, "srv1=1 srv2=1 srv3=2",
			"[api/srv1 weight 1 (api-1) api/srv2 weight 1 (api-2) api/srv3 weight 2 (api-c)]"},
		{"a weight label 0", func() { f.members[0].Config[specs.WeightKey] = "0" }, "srv1=0 srv2=1 srv3=1",
			"[api/srv1 weight 0 (api-1) api/srv3 weight 1 (api-c)]"},
		{"the label removed", func() { delete(f.members[0].Config, specs.WeightKey) }, "srv1=1 srv2=1 srv3=2",
			"[api/srv1 weight 1 (api-1) api/srv3 weight 2 (api-c)]"},
		{"canary 0%", func() { lb.Spec.Pools[0].Canary.Percent = 0 }, "srv1=1 srv2=1 srv3=0",
			"[api/srv3 weight 0 (api-c)]"},
	}
	for _, s := range steps {
		s.change()
		p := apply(t, a, lb)
		if p.Reload != ReloadNone || f.hap.reloads != reloads || haproxy.ClaimedHash(f.hap.loaded) != hash {
			t.Fatalf("%s: reloaded: %v", s.name, p)
		}
		if got := weightsOf(f); got != s.weights {
			t.Errorf("%s: weights %s, want %s", s.name, got, s.weights)
		}
		if got := fmt.Sprint(p.Runtime); got != s.runtime {
			t.Errorf("%s: runtime %s, want %s", s.name, got, s.runtime)
		}
		if p := apply(t, a, lb); p.Changed() {
			t.Fatalf("%s: the next pass changed something: %v", s.name, p)
		}
	}
}

// After a reload, the new worker gets the weights the plan wants.
func TestWeightsSurviveAReload(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{member("api-1", "10.0.0.11"), member("api-2", "10.0.0.12")}
	f.members[1].Config[specs.WeightKey] = "50"
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	apply(t, a, lb)
	lb.Spec.Stats.Port = 8404
	p := apply(t, a, lb)
	if p.Reload != ReloadConfigChanged {
		t.Fatalf("no reload: %v", p)
	}
	if got := weightsOf(f); got != "srv1=2 srv2=1" {
		t.Fatalf("after the reload: %s (runtime %v)", got, p.Runtime)
	}
}

// A bad label leaves the member in its pool at the default weight, and the
// status names the instance and the key.
func TestABadWeightLabelIsReported(t *testing.T) {
	f := newFake()
	f.members = []incus.Instance{member("api-1", "10.0.0.11"), member("api-2", "10.0.0.12")}
	f.members[1].Config[specs.WeightKey] = "heavy"
	a := &Applier{Incus: f, Log: logr.Discard()}
	lb := testLB(t, false)
	apply(t, a, lb)
	if got := weightsOf(f); got != "srv1=1 srv2=1" {
		t.Fatalf("weights: %s", got)
	}
	st := StatusFromConfig(f.inst.Config)
	d := st.Condition(ConditionDegraded)
	if ready(f) != "True" || d == nil || d.Status != "True" || d.Reason != "InvalidMemberLabel" ||
		!strings.Contains(d.Message, `instance default/api-2: user.incuslb.weight="heavy"`) {
		t.Fatalf("status: %+v", st)
	}
	f.members[1].Config[specs.WeightKey] = "100"
	apply(t, a, lb)
	st = StatusFromConfig(f.inst.Config)
	if d := st.Condition(ConditionDegraded); d.Status != "False" {
		t.Fatalf("fixed, still: %+v", d)
	}
}

// TestPlanWeights: the plan sets only the weights that differ from the
// live ones, never by a reload.
func TestPlanWeights(t *testing.T) {
	lb := canaryLB(t, 20)
	two := haproxy.Render(lb, haproxy.Assign(lb, map[string][]haproxy.Member{"api": {{Name: "api-1", Address: "10.0.0.11"}, {Name: "api-c", Address: "10.0.0.13"}}}, nil), haproxy.Options{})
	withWeights := func(w1, w2 int) *Observation {
		o := running(two)
		for i := range o.Servers {
			switch o.Servers[i].Name {
			case "srv1":
				o.Servers[i].Weight, o.Servers[i].HasWeight = w1, true
			case "srv2":
				o.Servers[i].Weight, o.Servers[i].HasWeight = w2, true
			}
		}
		return o
	}
	labels := func(l map[string]memberLabels) *discovery {
		d := disc(member("api-1", "10.0.0.11"))
		d.members["api"] = append(d.members["api"], haproxy.Member{Name: "api-c", Address: "10.0.0.13"})
		d.labels = map[string]map[string]memberLabels{"api": l}
		return d
	}
	split := map[string]memberLabels{"api-1": {weight: 100}, "api-c": {weight: 100, canary: true}}
	for _, tc := range []struct {
		name string
		obs  *Observation
		disc *discovery
		want string
	}{
		{"live weights as wanted", withWeights(4, 1), labels(split), ""},
		{"one differs", withWeights(4, 2), labels(split), " weight api/srv2 weight 1 (api-c);"},
		{"unknown live weight counts as 1", running(two), labels(split), " weight api/srv1 weight 4 (api-1);"},
		{"a joining member gets its weight after its join", withWeights(4, 1),
			func() *discovery {
				d := labels(map[string]memberLabels{"api-1": {weight: 100}, "api-c": {weight: 100, canary: true}, "api-d": {weight: 100, canary: true}})
				d.members["api"] = append(d.members["api"], haproxy.Member{Name: "api-d", Address: "10.0.0.14"})
				return d
			}(),
			" config differs; join api/srv3 <- api-d (10.0.0.14:8080); weight api/srv1 weight 8 (api-1);"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &Plan{LB: "edge", Instance: "default/lb"}
			plan(planInput{lb: lb, obs: tc.obs, prev: previousLayout(lb, tc.obs), disc: tc.disc}, p)
			if got := strings.TrimPrefix(p.String(), "edge (default/lb):"); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
