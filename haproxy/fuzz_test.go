package haproxy_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/incuslb/incuslb/haproxy"
	"github.com/incuslb/incuslb/specs"
)

// FuzzValidateRender: any spec that validates renders a config that the
// real haproxy -c accepts, with members in its selector pools, and renders
// the same bytes twice.
func FuzzValidateRender(f *testing.F) {
	for _, glob := range []string{"testdata/*.yaml", "../specs/examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data, uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, nMembers uint8) {
		lbs, err := specs.Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		lb := lbs[0]
		specs.SetDefaults(lb)
		if len(specs.Validate(lb)) > 0 {
			return
		}
		members := map[string][]haproxy.Member{}
		for _, p := range lb.Spec.Pools {
			for i := 0; i < int(nMembers%40); i++ {
				members[p.Name] = append(members[p.Name], haproxy.Member{
					Name: fmt.Sprintf("m-%d", i), Address: fmt.Sprintf("10.0.%d.%d", i/250, 1+i%250)})
			}
		}
		layout := haproxy.Assign(lb, members, nil)
		cfg := haproxy.Render(lb, layout, haproxy.Options{})
		if string(cfg) != string(haproxy.Render(lb, layout, haproxy.Options{})) {
			t.Fatal("render is not deterministic")
		}
		haproxyCheck(t, cfg, lb.Metadata.Name)
	})
}
