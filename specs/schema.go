package specs

import (
	"embed"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strings"
	"sync"
)

// The JSON Schema of a LoadBalancer document, for editors (the
// yaml-language-server modeline in the examples) and CI. It is generated
// from the Go types the loader decodes into: the same field names, unknown
// fields refused as the loader refuses them, descriptions from the fields'
// doc comments, and the enums and defaults that Validate and SetDefaults
// use (schemaFacts). It describes shape, not every rule: Validate stays
// the authority (cross-field rules, file contents).

// SchemaID is the schema's $id.
const SchemaID = "https://github.com/incuslb/incuslb/specs/incuslb.schema.json"

//go:embed types.go acme.go ha.go headers.go ratelimit.go tcp.go canary.go
var typeSources embed.FS

// fieldFacts are what the Go types do not say of a field.
type fieldFacts struct {
	enum    []string
	def     any
	pattern string
	min     *int
	max     *int
}

func intp(i int) *int { return &i }

// durationPattern matches what time.ParseDuration takes (as written in specs).
const durationPattern = `^-?([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$|^0$`

// schemaFacts are keyed by "Type.jsonName".
var schemaFacts = map[string]fieldFacts{
	"LoadBalancer.apiVersion":       {enum: []string{APIVersion}},
	"LoadBalancer.kind":             {enum: []string{Kind}},
	"ObjectMeta.name":               {pattern: `^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`},
	"InstanceSpec.project":          {def: DefaultProject},
	"InstanceSpec.image":            {def: DefaultImage},
	"FrontendSpec.httpPort":         {def: DefaultHTTPPort, min: intp(1), max: intp(65535)},
	"FrontendSpec.httpsPort":        {def: DefaultHTTPSPort, min: intp(1), max: intp(65535)},
	"StatsSpec.port":                {def: DefaultStatsPort, min: intp(1), max: intp(65535)},
	"DefaultsSpec.join":             {enum: []string{JoinChecked, JoinImmediate}, def: JoinChecked},
	"Pool.join":                     {enum: []string{JoinChecked, JoinImmediate}},
	"Pool.balance":                  {enum: []string{BalanceRoundRobin, BalanceLeastConn, BalanceURI}, def: BalanceRoundRobin},
	"Pool.port":                     {min: intp(1), max: intp(65535)},
	"Pool.family":                   {enum: families, def: FamilyIPv4},
	"Pool.mode":                     {enum: []string{ModeHTTP, ModeTCP}, def: ModeHTTP},
	"Pool.proxyProtocol":            {enum: []string{"v1", "v2"}},
	"TCPListener.port":              {min: intp(1), max: intp(65535)},
	"Canary.percent":                {min: intp(0), max: intp(100)},
	"RateLimit.requests":            {min: intp(1), max: intp(maxRateRequests)},
	"RateLimit.burst":               {min: intp(0), max: intp(maxRateRequests)},
	"RateLimit.by":                  {def: RateLimitBySource, pattern: "^(source|(header|cookie):" + headerToken + ")$"},
	"BackendTLS.verify":             {enum: []string{VerifyNone, VerifyRequired}, def: VerifyRequired},
	"ACMESpec.challenge":            {enum: []string{ChallengeHTTP01, ChallengeDNS01}, def: ChallengeHTTP01},
	"ACMESpec.keyType":              {enum: acmeKeyTypes, def: DefaultACMEKeyType},
	"ACMESpec.directory":            {def: LetsEncryptStaging, pattern: `^https://`},
	"HighAvailabilitySpec.nic":      {def: "eth0"},
	"HighAvailabilitySpec.replicas": {min: intp(2), max: intp(MaxReplicas)},
	"VRRPSpec.routerID":             {def: DefaultRouterID, min: intp(1), max: intp(255)},
}

// Schema returns the JSON Schema (draft 2020-12) of a LoadBalancer
// document, indented, ending in a newline. It is deterministic.
func Schema() []byte {
	docs := fieldDocs()
	s := schemaOf(reflect.TypeOf(LoadBalancer{}), docs)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaID
	s["title"] = "incuslb LoadBalancer"
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		panic(err) // only maps, slices and strings: cannot fail
	}
	return append(out, '\n')
}

var (
	durationT  = reflect.TypeOf(Duration{})
	acmeHostsT = reflect.TypeOf(ACMEHosts{})
)

// schemaOf is the schema of a Go type the loader decodes into.
func schemaOf(t reflect.Type, docs map[string]string) map[string]any {
	switch {
	case t == durationT:
		return map[string]any{"type": "string", "pattern": durationPattern}
	case t == acmeHostsT:
		return map[string]any{"oneOf": []any{
			map[string]any{"type": "array", "items": map[string]any{"type": "string"}},
			map[string]any{"const": ACMEFromRoutes},
		}}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), docs)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), docs)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), docs)}
	case reflect.Struct:
		props := map[string]any{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			p := schemaOf(f.Type, docs)
			key := t.Name() + "." + name
			if d := docs[t.Name()+"."+f.Name]; d != "" {
				p["description"] = d
			}
			if facts, ok := schemaFacts[key]; ok {
				if facts.enum != nil {
					p["enum"] = facts.enum
				}
				if facts.def != nil {
					p["default"] = facts.def
				}
				if facts.pattern != "" {
					p["pattern"] = facts.pattern
				}
				if facts.min != nil {
					p["minimum"] = *facts.min
				}
				if facts.max != nil {
					p["maximum"] = *facts.max
				}
			}
			props[name] = p
			if !strings.Contains(opts, "omitempty") && !strings.Contains(opts, "omitzero") && isRequired(key) {
				required = append(required, name)
			}
		}
		s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	}
	return map[string]any{}
}

// isRequired: a field without omitempty is required unless the validator
// defaults it (the spec's sections, which may be left out).
func isRequired(key string) bool {
	switch key {
	case "LoadBalancerSpec.instance", "LoadBalancerSpec.frontend", "LoadBalancerSpec.stats",
		"LoadBalancerSpec.defaults", "DefaultsSpec.healthCheck", "DefaultsSpec.timeouts",
		"Pool.healthCheck":
		return false
	}
	return true
}

var (
	docsOnce sync.Once
	docsMap  map[string]string
)

// fieldDocs reads the doc comments of the spec's struct fields, keyed by
// "Type.Field", from the embedded sources.
func fieldDocs() map[string]string {
	docsOnce.Do(func() {
		docsMap = map[string]string{}
		fset := token.NewFileSet()
		for _, name := range []string{"types.go", "acme.go", "ha.go", "headers.go", "ratelimit.go", "tcp.go", "canary.go"} {
			src, err := typeSources.ReadFile(name)
			if err != nil {
				continue
			}
			f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
			if err != nil {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok {
					return true
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					return false
				}
				for _, field := range st.Fields.List {
					doc := field.Doc.Text()
					if doc == "" {
						doc = field.Comment.Text()
					}
					doc = strings.Join(strings.Fields(doc), " ")
					for _, id := range field.Names {
						docsMap[ts.Name.Name+"."+id.Name] = doc
					}
				}
				return false
			})
		}
	})
	return docsMap
}
