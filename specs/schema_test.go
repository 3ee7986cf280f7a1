package specs_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"sigs.k8s.io/yaml"

	"github.com/incuslb/incuslb/specs"
)

// TestSchemaInSync: specs/incuslb.schema.json is what Schema generates from
// the types (go test ./specs -run Schema -update-schema rewrites it).
func TestSchemaInSync(t *testing.T) {
	got := specs.Schema()
	if !json.Valid(got) {
		t.Fatal("Schema is not JSON")
	}
	if *updateSchema {
		if err := os.WriteFile("incuslb.schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("incuslb.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("specs/incuslb.schema.json is out of date: go test ./specs -run Schema -update-schema")
	}
}

// TestSchemaFacts: the schema carries the validator's names, enums and
// defaults, and refuses unknown fields.
func TestSchemaFacts(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(specs.Schema(), &s); err != nil {
		t.Fatal(err)
	}
	at := func(path ...string) map[string]any {
		t.Helper()
		cur := s
		for _, p := range path {
			next, ok := cur[p].(map[string]any)
			if !ok {
				t.Fatalf("no %v in the schema", path)
			}
			cur = next
		}
		return cur
	}
	if s["additionalProperties"] != false {
		t.Error("unknown top-level fields are not refused")
	}
	pool := at("properties", "spec", "properties", "pools", "items")
	if pool["additionalProperties"] != false {
		t.Error("unknown pool fields are not refused")
	}
	bal := at("properties", "spec", "properties", "pools", "items", "properties", "balance")
	if bal["default"] != specs.BalanceRoundRobin || len(bal["enum"].([]any)) != 3 {
		t.Errorf("balance: %v", bal)
	}
	acme := at("properties", "spec", "properties", "frontend", "properties", "tls", "properties", "acme", "properties")
	if acme["challenge"].(map[string]any)["default"] != specs.ChallengeHTTP01 {
		t.Errorf("acme.challenge: %v", acme["challenge"])
	}
	if d, _ := acme["hosts"].(map[string]any)["description"].(string); d == "" {
		t.Error("acme.hosts has no description from its doc comment")
	}
}

var updateSchema = flag.Bool("update-schema", false, "rewrite specs/incuslb.schema.json")

// TestExamplesMatchSchema: every example (and golden input) that the
// validator accepts is valid against the schema, and an unknown field or a
// wrong enum is not.
func TestExamplesMatchSchema(t *testing.T) {
	c := jsonschema.NewCompiler()
	var doc any
	if err := json.Unmarshal(specs.Schema(), &doc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource(specs.SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(specs.SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("examples/*.yaml")
	more, _ := filepath.Glob("../haproxy/testdata/*.yaml")
	files = append(files, more...)
	if len(files) < 5 {
		t.Fatalf("only %d examples", len(files))
	}
	asJSON := func(y []byte) any {
		t.Helper()
		j, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatal(err)
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".members.yaml") {
			continue
		}
		if err := sch.Validate(asJSON(data)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	bad := strings.Replace(base, "      port: 8080\n", "      port: 8080\n      balance: random\n", 1)
	if sch.Validate(asJSON([]byte(bad))) == nil {
		t.Error("balance: random passes the schema")
	}
	bad = strings.Replace(base, "      port: 8080\n", "      port: 8080\n      helthCheck: {}\n", 1)
	if sch.Validate(asJSON([]byte(bad))) == nil {
		t.Error("an unknown field passes the schema")
	}
}
