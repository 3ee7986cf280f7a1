package specs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	yaml3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// Load reads every LoadBalancer in path: a file, a directory (its *.yaml,
// *.yml and *.json files, sorted by name, not recursive), or "-" for stdin.
// Parsing is strict; problems come back as an ErrorList. Load neither
// defaults nor validates. Every file is read with ReadRegularFile, at most
// MaxSpecFile bytes; a directory entry that cannot be read safely (see
// ListFiles) is a problem of its own file.
func Load(path string, stdin io.Reader) ([]*LoadBalancer, error) {
	if path == "-" {
		data, err := io.ReadAll(io.LimitReader(stdin, MaxSpecFile+1))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %w", err)
		}
		return Parse(data, "<stdin>")
	}
	files, problems, err := ListFiles(path)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 && len(problems) == 0 {
		return nil, fmt.Errorf("%s: no *.yaml, *.yml or *.json files", path)
	}
	var all []*LoadBalancer
	for _, f := range files {
		data, err := ReadRegularFile(f, MaxSpecFile)
		if err != nil {
			problems = append(problems, FieldError{Source: f, Reason: reasonOf(err)})
			continue
		}
		lbs, err := Parse(data, f)
		if l, ok := err.(ErrorList); ok {
			problems = append(problems, l...)
			continue
		} else if err != nil {
			return nil, err
		}
		all = append(all, lbs...)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return all, nil
}

// Parse reads the YAML (or JSON) documents in data. source names the input
// in errors and is recorded on each object. It is all or nothing: when any
// document is bad, Parse returns no objects and every problem.
func Parse(data []byte, source string) ([]*LoadBalancer, error) {
	lbs, problems := ParseEach(data, source)
	if len(problems) > 0 {
		return nil, problems
	}
	return lbs, nil
}

// ParseEach reads the documents in data one by one: it returns the good
// ones, and the problems of the bad ones, so that one bad document does not
// hide the others. Each problem carries its Doc and, when the document's
// metadata.name could still be read, its LB. Input with no document at all
// is one problem with neither.
func ParseEach(data []byte, source string) ([]*LoadBalancer, ErrorList) {
	if len(data) > MaxSpecFile {
		return nil, ErrorList{{Source: source, Reason: fmt.Sprintf("larger than %d bytes, the most a spec file may hold", MaxSpecFile)}}
	}
	docs := splitDocuments(data)
	if len(docs) == 0 {
		return nil, ErrorList{{Source: source, Reason: "no LoadBalancer documents"}}
	}
	var out []*LoadBalancer
	var problems ErrorList
	for i, doc := range docs {
		docNum := 0
		if len(docs) > 1 {
			docNum = i + 1
		}
		lb, l := parseDocument(doc)
		if len(l) > 0 {
			name := documentName(doc)
			for _, e := range l {
				e.Source, e.Doc, e.LB = source, docNum, name
				problems = append(problems, e)
			}
			continue
		}
		lb.Source, lb.Doc = source, docNum
		out = append(out, lb)
	}
	return out, problems
}

// documentName reads only metadata.name of a document that does not parse
// strictly, so that its problems can be put on its LoadBalancer; "" when
// even that cannot be read.
func documentName(doc []byte) string {
	if checkYAMLSize(doc) != nil {
		return "" // not even looked at
	}
	var m struct {
		Metadata struct {
			Name any `json:"name"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return ""
	}
	name, _ := m.Metadata.Name.(string)
	return name
}

// splitDocuments splits a YAML stream at "---" lines and drops documents
// that hold only blank lines and comments.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if hasContent(cur.Bytes()) {
			docs = append(docs, append([]byte(nil), cur.Bytes()...))
		}
		cur.Reset()
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, " \t\r\n")
		if bytes.Equal(t, []byte("---")) || bytes.HasPrefix(t, []byte("--- ")) || bytes.Equal(t, []byte("...")) {
			flush()
			continue
		}
		cur.Write(line)
	}
	flush()
	return docs
}

func hasContent(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

// MaxYAMLNodes is the most YAML nodes a document may expand to, each alias
// counted as the size of what it refers to: a few hundred bytes of nested
// aliases ("billion laughs") cannot become gigabytes.
const MaxYAMLNodes = 100000

// checkYAMLSize parses doc into a node tree, where an alias stays a
// pointer to its anchor, and refuses it when expanding the aliases would
// make more than MaxYAMLNodes nodes. It runs before anything expands them.
func checkYAMLSize(doc []byte) error {
	var root yaml3.Node
	if err := yaml3.Unmarshal(doc, &root); err != nil {
		return err
	}
	c := nodeCounter{size: map[*yaml3.Node]int{}, open: map[*yaml3.Node]bool{}}
	if _, err := c.count(&root); err != nil {
		return err
	}
	return nil
}

// tooManyNodes is a document refused for its expanded size.
type tooManyNodes string

func (e tooManyNodes) Error() string { return string(e) }

// nodeCounter counts the nodes of a YAML tree as if its aliases were
// expanded, remembering the size of each node it has counted, so that the
// work is linear in the size of the tree as written.
type nodeCounter struct {
	size    map[*yaml3.Node]int
	open    map[*yaml3.Node]bool // being counted: an alias to one is a cycle
	aliases bool
}

func (c *nodeCounter) count(n *yaml3.Node) (int, error) {
	if v, ok := c.size[n]; ok {
		return v, nil
	}
	if c.open[n] {
		return 0, tooManyNodes("a YAML alias refers to a node that contains it")
	}
	c.open[n] = true
	defer delete(c.open, n)
	total := 1
	if n.Kind == yaml3.AliasNode && n.Alias != nil {
		c.aliases = true
		v, err := c.count(n.Alias)
		if err != nil {
			return 0, err
		}
		total = v
	}
	for _, child := range n.Content {
		v, err := c.count(child)
		if err != nil {
			return 0, err
		}
		total += v
		if total > MaxYAMLNodes {
			break
		}
	}
	if total > MaxYAMLNodes {
		if c.aliases {
			return 0, tooManyNodes(fmt.Sprintf("YAML aliases expand to more than %d nodes", MaxYAMLNodes))
		}
		return 0, tooManyNodes(fmt.Sprintf("more than %d YAML nodes", MaxYAMLNodes))
	}
	c.size[n] = total
	return total, nil
}

func parseDocument(doc []byte) (*LoadBalancer, ErrorList) {
	if err := checkYAMLSize(doc); err != nil {
		var big tooManyNodes
		if errors.As(err, &big) {
			return nil, ErrorList{{Reason: err.Error()}}
		}
		return nil, ErrorList{{Reason: "not valid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, ErrorList{{Reason: "not valid YAML: " + strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")}}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, ErrorList{{Reason: "not valid YAML: " + err.Error()}}
	}
	if _, ok := raw.(map[string]any); !ok {
		return nil, ErrorList{{Reason: "a document must be a mapping (apiVersion, kind, metadata, spec)"}}
	}
	var e errs
	checkShape("", raw, reflect.TypeOf(LoadBalancer{}), &e)
	if len(e.list) > 0 {
		return nil, e.list
	}
	var lb LoadBalancer
	if err := json.Unmarshal(js, &lb); err != nil {
		// checkShape accepts only what decodes; this is a bug if it happens.
		return nil, ErrorList{{Reason: "cannot decode: " + err.Error()}}
	}
	return &lb, nil
}

var (
	durationType  = reflect.TypeOf(Duration{})
	acmeHostsType = reflect.TypeOf(ACMEHosts{})
)
