package specs

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// The shape of a decoded document against the spec's types: unknown
// fields (with the nearest known name) and values of the wrong kind, each
// at its path.

// checkShape walks decoded JSON against the Go type it will decode into,
// reporting unknown fields and wrong types with their paths, so that every
// problem is named at once (encoding/json stops at the first, without a path).
func checkShape(path string, v any, t reflect.Type, e *errs) {
	if v == nil {
		return // YAML null: the zero value
	}
	if t == durationType {
		s, ok := v.(string)
		if !ok {
			e.add(path, "must be a duration string such as \"5s\"")
			return
		}
		if _, err := time.ParseDuration(s); err != nil {
			e.add(path, "%q is not a duration (use a form such as \"5s\" or \"1h30m\")", s)
		}
		return
	}
	if t == acmeHostsType {
		if s, ok := v.(string); ok {
			if s != ACMEFromRoutes {
				e.add(path, "must be a list of hosts or %q, not %q", ACMEFromRoutes, s)
			}
			return
		}
		checkShape(path, v, reflect.TypeOf([]string(nil)), e)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(path, v, t.Elem(), e)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			e.add(path, "must be a mapping, not %s", describe(v))
			return
		}
		fields := jsonFields(t)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			f, ok := fields[k]
			if !ok {
				e.add(join(path, k), "unknown field%s", suggest(k, fields))
				continue
			}
			checkShape(join(path, k), m[k], f.Type, e)
		}
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			e.add(path, "must be a list, not %s", describe(v))
			return
		}
		for i, item := range l {
			checkShape(fmt.Sprintf("%s[%d]", path, i), item, t.Elem(), e)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			e.add(path, "must be a mapping, not %s", describe(v))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			checkShape(fmt.Sprintf("%s[%s]", path, k), m[k], t.Elem(), e)
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			e.add(path, "must be a string, not %s (quote it)", describe(v))
		}
	case reflect.Int:
		n, ok := v.(json.Number)
		if !ok {
			e.add(path, "must be an integer, not %s", describe(v))
			return
		}
		if _, err := n.Int64(); err != nil {
			e.add(path, "must be an integer, not %s", n)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			e.add(path, "must be true or false, not %s", describe(v))
		}
	}
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f
	}
	return out
}

// suggest names a known field that differs from k only in case, or by one
// edit, the usual shape of a typo.
func suggest(k string, fields map[string]reflect.StructField) string {
	var best string
	for name := range fields {
		if strings.EqualFold(name, k) || editDistance(name, k) <= 2 {
			if best == "" || name < best {
				best = name
			}
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("%t", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprintf("%T", v)
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}
