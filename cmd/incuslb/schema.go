package main

import "github.com/incuslb/incuslb/specs"

// schema prints the JSON Schema of a LoadBalancer document (the one checked
// in as specs/incuslb.schema.json).
func (e *env) schema(args []string) error {
	fs := e.newFlags("schema", "schema")
	if err := parse(fs, args); err != nil {
		return err
	}
	_, err := e.stdout.Write(specs.Schema())
	return err
}
