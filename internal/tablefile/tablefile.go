// Package tablefile reads pg_flo's per-table YAML files — the rules file and
// the routing file — from disk or from a config's inline value, and gives
// the loaders what they share: errors that point at a file and line, and
// table keys ("users" for any schema, "sales.users" for one).
package tablefile

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// Doc is one parsed file or inline value.
type Doc struct {
	// Source names the file, or the config field of an inline value.
	Source string
	// Root is the top-level node.
	Root *yaml.Node
	// lines says whether line numbers mean something: not for inline
	// values, which were parsed once by Benthos and marshalled again.
	lines bool
}

// ReadFile reads and parses a file; what names its kind in errors
// ("rules", "routing").
func ReadFile(path, what string) (*Doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s file: %w", what, err)
	}
	return Parse(data, path, what)
}

// Parse parses a file's contents; source (the file name) and line numbers
// start every error.
func Parse(data []byte, source, what string) (*Doc, error) {
	return parse(data, source, what, true)
}

// Inline parses a value given inline in a config; field names it in errors.
func Inline(v any, field, what string) (*Doc, error) {
	data, err := yaml.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	return parse(data, field, what, false)
}

// yamlLine matches a YAML syntax error that names its line.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func parse(data []byte, source, what string, lines bool) (*Doc, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// "yaml: line 3: …" becomes "rules.yaml:3: …", as every other
		// error of a file is placed.
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil && lines {
			return nil, fmt.Errorf("%s:%s: %s", source, m[1], m[2])
		}
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty %s", source, what)
	}
	return &Doc{Source: source, Root: doc.Content[0], lines: lines}, nil
}

// At is where a node is: "file:line", or the field of an inline value.
func (d *Doc) At(n *yaml.Node) string {
	if d.lines {
		return fmt.Sprintf("%s:%d", d.Source, n.Line)
	}
	return d.Source
}

// Errorf is an error about node n.
func (d *Doc) Errorf(n *yaml.Node, format string, args ...any) error {
	return fmt.Errorf("%s: %s", d.At(n), fmt.Sprintf(format, args...))
}

// Wrap places err, found while reading node n (a table's entry), at the
// line of the field it names (a FieldError) or else at n, after what
// ("table users rule 2").
func (d *Doc) Wrap(err error, n *yaml.Node, what string) error {
	var fe *FieldError
	if errors.As(err, &fe) && fe.node != nil {
		n = fe.node
	}
	return fmt.Errorf("%s: %s: %w", d.At(n), what, err)
}

// FieldError is a mistake in one field of an entry.
type FieldError struct {
	Field string
	Err   error
	node  *yaml.Node
}

func (e *FieldError) Error() string { return fmt.Sprintf("field %s: %v", oneLine(e.Field), e.Err) }

// oneLine is s, quoted when it holds a control character (a line break in
// a YAML key), so that an error naming it stays on one line.
func oneLine(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrorf is a FieldError at node n.
func FieldErrorf(n *yaml.Node, field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...), node: n}
}

// Key is a table key of a file: a bare table name, which matches the table
// in any schema, or schema.table.
type Key struct {
	Name          string // as written
	Schema, Table string // Schema is empty for a bare name
}

// ParseKey reads a table key.
func ParseKey(name string) (Key, error) {
	k := Key{Name: name, Table: name}
	if schema, table, ok := strings.Cut(name, "."); ok {
		k.Schema, k.Table = schema, table
	}
	if k.Table == "" || (k.Schema == "" && strings.Contains(name, ".")) || strings.IndexFunc(name, unicode.IsControl) >= 0 {
		return k, fmt.Errorf("bad table name %q (want table or schema.table)", name)
	}
	return k, nil
}

// Match returns the index of the key for schema.table among keys: its
// qualified key, else its bare name; -1 when none.
func Match(keys []Key, schema, table string) int {
	bare := -1
	for i, k := range keys {
		if k.Table != table {
			continue
		}
		if k.Schema == schema {
			return i
		}
		if k.Schema == "" {
			bare = i
		}
	}
	return bare
}
