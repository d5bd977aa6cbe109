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
