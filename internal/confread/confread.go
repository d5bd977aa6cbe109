// Package confread reads the fields of a parsed Benthos config one after the
// other and keeps the first error, so a component's constructor reads every
// field in a row, checks once, and reports which field failed.
//
// It is adapter support: only the Benthos components (inputs/, outputs/) use
// it; engine packages never see a service.ParsedConfig.
package confread

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"
)

// Reader reads fields of one parsed config. Once a read failed, every later
// read returns the zero value and Err reports the first failure.
type Reader struct {
	conf *service.ParsedConfig
	err  error
}

// New returns a Reader of conf.
func New(conf *service.ParsedConfig) *Reader {
	return &Reader{conf: conf}
}

// Err returns the first failed read as `field <name>: <cause>`, or nil.
func (r *Reader) Err() error { return r.err }

// String reads a string field.
func (r *Reader) String(name string) string { return read(r, name, r.conf.FieldString) }

// Int reads an int field.
func (r *Reader) Int(name string) int { return read(r, name, r.conf.FieldInt) }

// Bool reads a bool field.
func (r *Reader) Bool(name string) bool { return read(r, name, r.conf.FieldBool) }

// Duration reads a duration field.
func (r *Reader) Duration(name string) time.Duration { return read(r, name, r.conf.FieldDuration) }

// StringList reads a string list field.
func (r *Reader) StringList(name string) []string { return read(r, name, r.conf.FieldStringList) }

// TLSToggled reads a field declared with service.NewTLSToggledField and
// returns its TLS config, or nil when TLS is not enabled.
func (r *Reader) TLSToggled(name string) *tls.Config {
	type toggled struct {
		conf    *tls.Config
		enabled bool
	}
	v := read(r, name, func(path ...string) (toggled, error) {
		conf, enabled, err := r.conf.FieldTLSToggled(path...)
		return toggled{conf, enabled}, err
	})
	if !v.enabled {
		return nil
	}
	return v.conf
}

// read calls field for name unless a read already failed, and records the
// first failure with the field's name.
func read[T any](r *Reader, name string, field func(path ...string) (T, error)) T {
	var zero T
	if r.err != nil {
		return zero
	}
	v, err := field(name)
	if err != nil {
		r.err = fmt.Errorf("field %s: %w", name, err)
		return zero
	}
	return v
}

// Removed is a documented field a component no longer has, with what a user
// writes instead. Removed fields are reported by the component's lint rule
// for one release, so `pgflo lint` names the replacement instead of only
// calling the field unknown.
type Removed struct {
	Field   string
	Instead string
}

// LintChecks returns the Bloblang array items of a lint rule that report each
// removed field present in a config, for a rule of the form
// `root = [ …items… ].filter(e -> e != null)`.
func LintChecks(removed ...Removed) string {
	var b strings.Builder
	for _, r := range removed {
		fmt.Fprintf(&b, "  if this.exists(%q) { %q },\n", r.Field, "field "+r.Field+" was removed: "+r.Instead)
	}
	return b.String()
}
