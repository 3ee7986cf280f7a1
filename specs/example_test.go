package specs_test

import (
	"fmt"

	"github.com/incuslb/incuslb/specs"
)

// Every problem is reported at once, each with the path of its field.
func ExampleValidate() {
	lbs, _ := specs.Parse([]byte(`
apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata: {name: edge}
spec:
  stats: {port: 80}
  routes: [{pool: api}]
  pools:
    - name: api_pool
      selector: {user.role: api}
      port: 8080
      healthCheck: {expectStatus: "^2(", host: "x.org hdr X-Evil 1"}
`), "edge.yaml")
	lb := lbs[0]
	specs.SetDefaults(lb)
	fmt.Println(specs.Validate(lb))
	// Output:
	// spec.stats.port: port 80 is already used by spec.frontend.httpPort
	// spec.pools[0].healthCheck.host: must be a DNS name or IPv4 address, not "x.org hdr X-Evil 1"
	// spec.pools[0].healthCheck.expectStatus: does not compile: missing closing ): `^2(`
	// spec.routes[0].pool: names no pool in spec.pools: "api"
}
