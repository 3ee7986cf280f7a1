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
	if err == nil || !strings.Contains(err.Error(), `two.yaml: document 2 (LoadBalancer "edge2"): knd: unknown field`) {
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

func TestParseEachKeepsTheGoodDocuments(t *testing.T) {
	doc := func(name string) string { return strings.Replace(base, "name: edge", "name: "+name, 1) }
	bad := strings.Replace(doc("mid"), "port: 8080", "prot: 8080", 1)
	in := doc("first") + "---\n" + bad + "---\n" + doc("last")
	lbs, errs := specs.ParseEach([]byte(in), "three.yaml")
	if len(lbs) != 2 || lbs[0].Metadata.Name != "first" || lbs[0].Doc != 1 || lbs[1].Metadata.Name != "last" || lbs[1].Doc != 3 {
		t.Fatalf("good documents: %v", lbs)
	}
	want := `three.yaml: document 2 (LoadBalancer "mid"): spec.pools[0].prot: unknown field (did you mean "port"?)`
	if len(errs) != 1 || errs[0].LB != "mid" || errs[0].Doc != 2 || errs[0].Error() != want {
		t.Fatalf("got %v\nwant %s", errs, want)
	}
	// Parse keeps its contract: all or nothing.
	if lbs, err := specs.Parse([]byte(in), "three.yaml"); lbs != nil || err == nil || err.Error() != want {
		t.Fatalf("Parse: %v %v", lbs, err)
	}
}

func TestParseEachNamesTheDocumentWhenItCan(t *testing.T) {
	for _, tc := range []struct{ name, doc, lb string }{
		{"not yaml at all", "apiVersion: incuslb/v1alpha1\nmetadata: {name: mid\n", ""},
		{"duplicate key", "metadata: {name: mid}\nkind: LoadBalancer\nkind: LoadBalancer\n", "mid"},
		{"name not a string", "metadata: {name: 42}\nknd: LoadBalancer\n", ""},
		{"no metadata", "- a\n- b\n", ""},
		{"wrong type elsewhere", "metadata: {name: mid}\nspec: {stats: {port: x}}\n", "mid"},
	} {
		_, errs := specs.ParseEach([]byte(base+"---\n"+tc.doc), "x.yaml")
		if len(errs) == 0 {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, e := range errs {
			if e.Doc != 2 || e.LB != tc.lb || e.Source != "x.yaml" {
				t.Errorf("%s: got Doc %d LB %q Source %q, want 2 %q x.yaml (%v)", tc.name, e.Doc, e.LB, e.Source, tc.lb, e)
			}
		}
	}
	if lbs, errs := specs.ParseEach([]byte("# nothing\n"), "empty.yaml"); lbs != nil || len(errs) != 1 || errs[0].Doc != 0 || errs[0].LB != "" {
		t.Fatalf("empty input: %v %v", lbs, errs)
	}
}

func TestFieldErrorNamesItsLoadBalancerInMultiDocumentFiles(t *testing.T) {
	for _, tc := range []struct {
		e    specs.FieldError
		want string
	}{
		{specs.FieldError{Source: "a.yaml", Path: "kind", Reason: "r"}, "a.yaml: kind: r"},
		{specs.FieldError{Source: "a.yaml", LB: "x", Path: "kind", Reason: "r"}, "a.yaml: kind: r"},
		{specs.FieldError{Source: "a.yaml", Doc: 2, Path: "kind", Reason: "r"}, "a.yaml: document 2: kind: r"},
		{specs.FieldError{Source: "a.yaml", Doc: 2, LB: "x", Path: "kind", Reason: "r"}, `a.yaml: document 2 (LoadBalancer "x"): kind: r`},
		{specs.FieldError{Doc: 3, LB: "x", Reason: "r"}, `document 3 (LoadBalancer "x"): r`},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestParseAdopt(t *testing.T) {
	lbs, err := specs.Parse([]byte(base+"  instance: {adopt: true}\n"), "x.yaml")
	if err != nil || !lbs[0].Spec.Instance.Adopt {
		t.Fatalf("adopt: true: %v %v", lbs, err)
	}
	if lbs, err := specs.Parse([]byte(base), "x.yaml"); err != nil || lbs[0].Spec.Instance.Adopt {
		t.Fatalf("adopt defaults to false: %v", err)
	}
	for in, want := range map[string]string{
		"  instance: {adopt: \"yes\"}\n": `spec.instance.adopt: must be true or false, not the string "yes"`,
		"  instance: {adpot: true}\n":    `spec.instance.adpot: unknown field (did you mean "adopt"?)`,
	} {
		if _, err := specs.Parse([]byte(base+in), "x.yaml"); err == nil || err.Error() != "x.yaml: "+want {
			t.Errorf("got %v, want %s", err, want)
		}
	}
}
