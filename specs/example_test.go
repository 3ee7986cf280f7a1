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
	// spec.pools[0].healthCheck.host: must be a DNS name (ASCII letters, digits, '-' and '.') or IPv4 address, not "x.org hdr X-Evil 1"
	// spec.pools[0].healthCheck.expectStatus: must be a status pattern: an optional '^', then digits, '.', digit classes such as [23] or [0-9] and groups such as (200|204) (not nested), each with at most one '?', {n} or {n,m} (n, m at most 3), then an optional '$'; at most 64 characters; not "^2("
	// spec.routes[0].pool: names no pool in spec.pools: "api"
}
