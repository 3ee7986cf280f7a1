package specs

import (
	"reflect"
	"strings"
	"testing"
)

// TestSchemaFactsNameFields: every key of schemaFacts names a field of a
// spec type by its JSON name (a typo would silently add nothing).
func TestSchemaFactsNameFields(t *testing.T) {
	fields := map[string]bool{}
	var walk func(reflect.Type)
	seen := map[reflect.Type]bool{}
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] {
			return
		}
		seen[t] = true
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name != "" && name != "-" {
				fields[t.Name()+"."+name] = true
				walk(f.Type)
			}
		}
	}
	walk(reflect.TypeOf(LoadBalancer{}))
	for key := range schemaFacts {
		if !fields[key] {
			t.Errorf("schemaFacts[%q] names no field", key)
		}
	}
}
