package specs

import (
	"errors"
	"fmt"
	"strings"
)

// FieldError is one problem with one field of one document.
type FieldError struct {
	Source string // file, or "" for input without a name
	Doc    int    // 1-based document index within Source; 0 when the file has one
	LB     string // metadata.name of the document, when it could be read
	Path   string // e.g. spec.pools[1].healthCheck.interval
	Reason string
}

func (e FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	switch {
	case e.Doc > 0 && e.LB != "":
		fmt.Fprintf(&b, "document %d (LoadBalancer %q): ", e.Doc, e.LB)
	case e.Doc > 0:
		fmt.Fprintf(&b, "document %d: ", e.Doc)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// ErrorList is every problem found in an input. Invalid input is reported
// as a non-empty ErrorList, one problem a line.
type ErrorList []FieldError

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// errs collects FieldErrors for one document.
type errs struct {
	list ErrorList
}

func (e *errs) add(path, format string, args ...any) {
	e.list = append(e.list, FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

// Invalid reports whether err is (or wraps) an ErrorList, i.e. the input was
// at fault rather than the machine.
func Invalid(err error) bool {
	var l ErrorList
	return errors.As(err, &l)
}
