package haproxy_test

import (
	"fmt"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// Members keep their slots: a member that joins later takes a free slot and
// moves nobody, so the change needs no reload.
func ExampleAssign() {
	lb := &specs.LoadBalancer{Metadata: specs.ObjectMeta{Name: "edge"}, Spec: specs.LoadBalancerSpec{
		Pools: []specs.Pool{{Name: "api", Selector: map[string]string{"user.role": "api"}, Port: 8080, Slots: 4}},
	}}
	specs.SetDefaults(lb)
	before := haproxy.Assign(lb, map[string][]haproxy.Member{"api": {
		{Name: "api-2", Address: "10.77.0.12"}, {Name: "api-3", Address: "10.77.0.13"},
	}}, nil)
	after := haproxy.Assign(lb, map[string][]haproxy.Member{"api": {
		{Name: "api-1", Address: "10.77.0.11"}, {Name: "api-3", Address: "10.77.0.13"},
	}}, before)
	fmt.Print(before.String() + after.String())
	// Output:
	// api: srv1=api-2(10.77.0.12:8080) srv2=api-3(10.77.0.13:8080) [4 slots]
	// api: srv1=api-1(10.77.0.11:8080) srv2=api-3(10.77.0.13:8080) [4 slots]
}
