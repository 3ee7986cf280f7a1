package specs_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/incuslb/incuslb/specs"
)

// addSeeds adds every example spec and renderer test case as a seed.
func addSeeds(f *testing.F) {
	for _, glob := range []string{"examples/*.yaml", "../haproxy/testdata/*.yaml", "testdata/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// FuzzParse: no input makes parsing, defaulting or validation panic, every
// rejection is an ErrorList with reasons, and defaulting is idempotent.
func FuzzParse(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		lbs, err := specs.Parse(data, "fuzz.yaml")
		if err != nil {
			if !specs.Invalid(err) {
				t.Fatalf("Parse returned a non-ErrorList error: %v", err)
			}
			return
		}
		for _, lb := range lbs {
			specs.SetDefaults(lb)
			first := specs.Validate(lb)
			for _, e := range first {
				if e.Reason == "" {
					t.Fatalf("problem without a reason at %q", e.Path)
				}
			}
			specs.SetDefaults(lb)
			if len(specs.Validate(lb)) != len(first) {
				t.Fatalf("defaulting twice changed the validation result")
			}
		}
	})
}
