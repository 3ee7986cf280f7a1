package specs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration written as a Go duration string ("5s", "1h30m").
//
// Set records that the spec gave the field, so that defaulting can tell an
// explicit "0s" (zero) from a field left out (the default). Go code that
// builds a spec uses Dur, which sets it.
type Duration struct {
	time.Duration
	Set bool `json:"-"`
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string; null leaves the field unset.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("must be a duration string such as \"5s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (use a form such as \"5s\" or \"1h30m\")", s)
	}
	d.Duration, d.Set = v, true
	return nil
}

// IsZero reports whether the field was left out (and holds no value), for
// the omitzero JSON option: an explicit "0s" is written back.
func (d Duration) IsZero() bool { return !d.Set && d.Duration == 0 }

// Dur returns a Duration that counts as set; it keeps literals in tests and
// defaults short.
func Dur(d time.Duration) Duration { return Duration{Duration: d, Set: true} }
