// Command e2efail prints, from a Ginkgo JSON report, what each failed spec
// said: its name, its failure message and the tail of what it wrote. The
// Makefile runs it after a failed suite, so that the last lines of a CI log,
// which is often all that is kept, carry the reason and not only the place.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/onsi/ginkgo/v2/types"
)

const keep = 3000 // characters of each message and output tail

func tail(s string) string {
	if len(s) > keep {
		return "…" + s[len(s)-keep:]
	}
	return s
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: e2efail REPORT.json")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2efail:", err)
		os.Exit(1)
	}
	defer f.Close()
	var reports []types.Report
	if err := json.NewDecoder(f).Decode(&reports); err != nil {
		fmt.Fprintln(os.Stderr, "e2efail:", err)
		os.Exit(1)
	}
	for _, r := range reports {
		for _, s := range r.SpecReports {
			if !s.Failed() {
				continue
			}
			fmt.Printf("==== FAILED: %s\n", s.FullText())
			fmt.Printf("---- at %s after %v\n", s.Failure.Location, s.RunTime.Round(1e6))
			fmt.Printf("---- message:\n%s\n", tail(s.Failure.Message))
			if out := s.CapturedGinkgoWriterOutput; out != "" {
				fmt.Printf("---- what it wrote (tail):\n%s\n", tail(out))
			}
		}
	}
}
