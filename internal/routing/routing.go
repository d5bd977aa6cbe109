// Package routing is pg_flo's routing, rebuilt: per source table a
// destination table (and, a pgflo extension, schema), column renames and
// the operations to keep, read from pg_flo's routing file unchanged
// (docs/routing.md).
package routing

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	"gopkg.in/yaml.v3"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/ddl"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/tablefile"
)

// Router holds the routes of a routing file.
type Router struct {
	source string
	keys   []tablefile.Key
	routes []*Route // routes[i] is the route of keys[i]
}

// Route is one source table's route.
type Route struct {
	key               tablefile.Key
	DestinationTable  string
	DestinationSchema string
	Columns           map[string]string // source column → destination column
	sources           map[string]string // destination column → source column
	// renamed remembers the last columns renamed: a table's events share
	// their columns slice (internal/change), so this is a pointer check.
	renamed atomic.Pointer[renamedColumns]
	ops     map[event.Op]bool // nil: every operation
}

// Operations are the operations a route can keep.
var Operations = []event.Op{event.Insert, event.Update, event.Delete, event.Truncate, event.DDL}

// LoadFile reads a routing file.
func LoadFile(path string) (*Router, error) {
	doc, err := tablefile.ReadFile(path, "routing")
	if err != nil {
		return nil, err
	}
	return load(doc)
}

// emptyRouting is what an empty file lacks, for its error.
const emptyRouting = "routing, want a map from source table to its route"

// LoadInline reads routes given inline in a config (already parsed YAML);
// field names the config field in errors.
func LoadInline(v any, field string) (*Router, error) {
	doc, err := tablefile.Inline(v, field, emptyRouting)
	if err != nil {
		return nil, err
	}
	return load(doc)
}

func load(doc *tablefile.Doc) (*Router, error) {
	root := doc.Root
	if root.Kind != yaml.MappingNode {
		return nil, doc.Errorf(root, "want a map from source table to its route")
	}
	r := &Router{source: doc.Source}
	for i := 0; i < len(root.Content); i += 2 {
		keyNode, body := root.Content[i], root.Content[i+1]
		key, err := tablefile.ParseKey(keyNode.Value)
		if err != nil {
			return nil, doc.Errorf(keyNode, "%v", err)
		}
		if slices.Contains(r.keys, key) {
			return nil, doc.Errorf(keyNode, "table %s is routed twice", key.Name)
		}
		route := &Route{key: key, Columns: map[string]string{}}
		if err := route.load(body); err != nil {
			return nil, doc.Wrap(err, body, "table "+key.Name)
		}
		r.keys = append(r.keys, key)
		r.routes = append(r.routes, route)
	}
	return r, nil
}

var fieldErr = tablefile.FieldErrorf

var routeFields = []string{"source_table", "destination_table", "destination_schema", "column_mappings", "operations"}

func (route *Route) load(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fieldErr(n, route.key.Name, "want a map with %s", strings.Join(routeFields, ", "))
	}
	for i := 0; i < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		scalar := func() (string, error) {
			if value.Kind != yaml.ScalarNode || value.Tag == "!!null" || value.Value == "" {
				return "", fieldErr(value, key.Value, "want a name")
			}
			return value.Value, nil
		}
		var err error
		switch key.Value {
		case "source_table":
			var s string
			if s, err = scalar(); err == nil && s != route.key.Name && s != route.key.Table {
				err = fieldErr(value, key.Value, "%q differs from the route's key %q (pg_flo ignored it; the key names the source table)", s, route.key.Name)
			}
		case "destination_table":
			route.DestinationTable, err = scalar()
		case "destination_schema":
			route.DestinationSchema, err = scalar()
		case "column_mappings":
			err = route.loadMappings(value)
		case "operations":
			err = route.loadOps(value)
		default:
			err = fieldErr(key, key.Value, "unknown field (want one of %s)", strings.Join(routeFields, ", "))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (route *Route) loadMappings(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fieldErr(n, "column_mappings", "want a list of {source, destination}")
	}
	taken := map[string]string{}
	for j, item := range n.Content {
		field := fmt.Sprintf("column_mappings[%d]", j)
		if item.Kind != yaml.MappingNode {
			return fieldErr(item, field, "want {source, destination}")
		}
		var src, dst string
		for k := 0; k < len(item.Content); k += 2 {
			key, value := item.Content[k], item.Content[k+1]
			if value.Kind != yaml.ScalarNode || value.Value == "" {
				return fieldErr(value, field+"."+key.Value, "want a column name")
			}
			switch key.Value {
			case "source":
				src = value.Value
			case "destination":
				dst = value.Value
			default:
				return fieldErr(key, field+"."+key.Value, "unknown field (want source, destination)")
			}
		}
		if src == "" || dst == "" {
			return fieldErr(item, field, "want both source and destination")
		}
		if _, dup := route.Columns[src]; dup {
			return fieldErr(item, field+".source", "column %q is mapped twice", src)
		}
		if other, dup := taken[dst]; dup {
			return fieldErr(item, field+".destination", "columns %q and %q would both become %q", other, src, dst)
		}
		route.Columns[src], taken[dst] = dst, src
	}
	route.sources = taken
	return nil
}

func (route *Route) loadOps(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fieldErr(n, "operations", "want a list of %s", opNames())
	}
	if len(n.Content) == 0 {
		return fieldErr(n, "operations", "empty list would drop every event of the table; omit operations to keep all")
	}
	route.ops = map[event.Op]bool{}
	for _, item := range n.Content {
		op := event.Op(strings.ToUpper(item.Value))
		if !slices.Contains(Operations, op) {
			return fieldErr(item, "operations", "unknown operation %q (want %s)", item.Value, opNames())
		}
		route.ops[op] = true
	}
	return nil
}

func opNames() string {
	names := make([]string, len(Operations))
	for i, op := range Operations {
		names[i] = string(op)
	}
	return strings.Join(names, ", ")
}

// Apply routes an event: false when its route does not keep its operation
// (the event is to be dropped); otherwise the event is renamed in place.
// An error (two columns renamed to one name) leaves the event unchanged.
func (r *Router) Apply(ev *change.Event) (bool, error) {
	i := tablefile.Match(r.keys, ev.Schema, ev.Table)
	if i < 0 {
		return true, nil
	}
	route := r.routes[i]
	if route.ops != nil && !route.ops[ev.Op] {
		return false, nil
	}
	if len(route.Columns) > 0 {
		columns, err := route.renamedColumns(ev.Columns)
		if err != nil {
			return true, fmt.Errorf("%s: table %s: %w", r.source, route.key.Name, err)
		}
		rename := func(name string, at int) string {
			if at >= 0 && at < len(columns) && ev.Columns[at].Name == name {
				return columns[at].Name
			}
			for i, c := range ev.Columns {
				if c.Name == name {
					return columns[i].Name
				}
			}
			return name
		}
		for _, row := range []event.RawRow{ev.New, ev.Old} {
			for i := range row {
				row[i].Name = rename(row[i].Name, i)
			}
		}
		for i, name := range ev.UnchangedToast {
			ev.UnchangedToast[i] = rename(name, -1)
		}
		ev.Columns = columns
		if ev.Op == event.DDL {
			if err := route.renameInDDL(ev); err != nil {
				return true, fmt.Errorf("%s: table %s: %w", r.source, route.key.Name, err)
			}
		}
	}
	if route.DestinationTable != "" {
		ev.Table = route.DestinationTable
	}
	if route.DestinationSchema != "" {
		ev.Schema = route.DestinationSchema
	}
	ev.MarkEdited()
	return true, nil
}

// renameInDDL renames the route's columns where the DDL event's statement
// names them (ALTER TABLE actions, CREATE INDEX column lists), so the
// statement replayed on the target speaks of the target's columns. The
// table itself is renamed by whoever replays it (pg_flo_postgres names its
// target table).
func (route *Route) renameInDDL(ev *change.Event) error {
	i := ev.New.Index(event.DDLCommandColumn)
	if i < 0 || ev.New[i].Null() {
		return nil
	}
	var command string
	if err := json.Unmarshal(ev.New[i].Value, &command); err != nil {
		return fmt.Errorf("DDL event: %s is not a string: %w", event.DDLCommandColumn, err)
	}
	stmts := ddl.Split(command)
	changed := false
	for j, stmt := range stmts {
		if renamed := ddl.Rewrite(stmt, ddl.Rename{Columns: route.Columns}); renamed != stmt {
			stmts[j], changed = renamed, true
		}
	}
	if changed {
		ev.New[i].Value = event.AppendJSONString(nil, strings.Join(stmts, "; "))
	}
	return nil
}

type renamedColumns struct {
	in, out []event.Column
}

// renamedColumns returns columns renamed by the route's mappings (a new
// slice: columns are shared and never edited in place). Mappings are one
// to one (Load checks), so two columns collide only when a column keeps a
// name that a mapped column takes.
func (route *Route) renamedColumns(columns []event.Column) ([]event.Column, error) {
	if last := route.renamed.Load(); last != nil && len(last.in) == len(columns) && len(columns) > 0 && &last.in[0] == &columns[0] {
		return last.out, nil
	}
	out := slices.Clone(columns)
	for i, c := range columns {
		if dst, mapped := route.Columns[c.Name]; mapped {
			out[i].Name = dst
			continue
		}
		if src, taken := route.sources[c.Name]; taken && slices.ContainsFunc(columns, func(o event.Column) bool { return o.Name == src }) {
			return nil, fmt.Errorf("columns %q and %q would both be named %q", c.Name, src, c.Name)
		}
	}
	route.renamed.Store(&renamedColumns{in: columns, out: out})
	return out, nil
}
