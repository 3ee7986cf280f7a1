package specs_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/incuslb/incuslb/specs"
)

const base = `apiVersion: incuslb/v1alpha1
kind: LoadBalancer
metadata:
  name: edge
spec:
  routes:
    - pool: api_pool
  pools:
    - name: api_pool
      selector: {user.role: api}
      port: 8080
`

func TestParseUnknownFieldNamesItsPath(t *testing.T) {
	in := strings.Replace(base, "      port: 8080\n", "      port: 8080\n      helthCheck: {path: /}\n", 1)
	_, err := specs.Parse([]byte(in), "edge.yaml")
	want := "edge.yaml: spec.pools[0].helthCheck: unknown field (did you mean \"healthCheck\"?)"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

func TestParseReportsEveryShapeProblemAtOnce(t *testing.T) {
	in := base + "  stats: {port: \"9100\"}\n  defaults: {slowStart: 30, timeouts: {tunnel: 1 hour}}\n  frontend: {tls: true}\n"
	_, err := specs.Parse([]byte(in), "x.yaml")
	for _, want := range []string{
		"spec.stats.port: must be an integer",
		"spec.defaults.slowStart: must be a duration string",
		`spec.defaults.timeouts.tunnel: "1 hour" is not a duration`,
		"spec.frontend.tls: must be a mapping",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestParseMultipleDocuments(t *testing.T) {
	second := strings.Replace(base, "name: edge", "name: edge2", 1)
	in := "# two load balancers\n---\n" + base + "---\n" + second + "---\n# trailing comment only\n"
	lbs, err := specs.Parse([]byte(in), "two.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(lbs) != 2 || lbs[0].Metadata.Name != "edge" || lbs[1].Metadata.Name != "edge2" {
		t.Fatalf("got %d objects", len(lbs))
	}
	bad := base + "---\n" + strings.Replace(second, "kind:", "knd:", 1)
	_, err = specs.Parse([]byte(bad), "two.yaml")
	if err == nil || !strings.Contains(err.Error(), "two.yaml: document 2: knd: unknown field") {
		t.Fatalf("got %v", err)
	}
}

func TestParseRejectsDuplicateKeysAndNonMappings(t *testing.T) {
	for name, in := range map[string]string{
		"duplicate key": base + "metadata: {name: x}\n",
		"a list":        "- a\n- b\n",
		"not yaml":      "spec: [unclosed\n",
		"empty":         "# nothing\n",
	} {
		if _, err := specs.Parse([]byte(in), "x.yaml"); err == nil || !specs.Invalid(err) {
			t.Errorf("%s: got %v, want an ErrorList", name, err)
		}
	}
}

func TestLoadDirectoryReadsSpecFilesInOrder(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b.yaml", strings.Replace(base, "name: edge", "name: bee", 1))
	write("a.yml", base)
	write("notes.txt", "not a spec")
	lbs, err := specs.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(lbs) != 2 || lbs[0].Metadata.Name != "edge" || lbs[1].Metadata.Name != "bee" {
		t.Fatalf("got %v", lbs)
	}
	if lbs[0].Source != filepath.Join(dir, "a.yml") {
		t.Fatalf("source %q", lbs[0].Source)
	}
}
