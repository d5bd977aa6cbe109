package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/tablefile"
)

// Operators are the filter operators, as pg_flo names them.
var Operators = []string{"eq", "ne", "gt", "lt", "gte", "lte", "contains"}

// LoadFile reads a rules file; errors name the file, line, table, rule and field.
func LoadFile(path string) (*Set, error) {
	doc, err := tablefile.ReadFile(path, "rules")
	if err != nil {
		return nil, err
	}
	return load(doc)
}

// LoadInline reads rules given inline in a config (already parsed YAML);
// field names the config field in errors.
func LoadInline(v any, field string) (*Set, error) {
	doc, err := tablefile.Inline(v, field, "rules, want a top-level tables: map")
	if err != nil {
		return nil, err
	}
	return load(doc)
}

func load(doc *tablefile.Doc) (*Set, error) {
	s := &Set{source: doc.Source}
	root := doc.Root
	if root.Kind != yaml.MappingNode {
		return nil, doc.Errorf(root, "want a map with the key tables")
	}
	var tables *yaml.Node
	for i := 0; i < len(root.Content); i += 2 {
		key, value := root.Content[i], root.Content[i+1]
		if key.Value != "tables" {
			return nil, doc.Errorf(key, "unknown key %q: a rules file has one top-level key, tables (pg_flo ignored a file without it; pgflo says so)", key.Value)
		}
		tables = value
	}
	if tables == nil {
		return nil, doc.Errorf(root, "missing the top-level key tables")
	}
	if tables.Kind != yaml.MappingNode {
		return nil, doc.Errorf(tables, "tables: want a map from table name to a list of rules")
	}
	for i := 0; i < len(tables.Content); i += 2 {
		keyNode, list := tables.Content[i], tables.Content[i+1]
		key, err := tablefile.ParseKey(keyNode.Value)
		if err != nil {
			return nil, doc.Errorf(keyNode, "%v", err)
		}
		if slices.Contains(s.keys, key) {
			return nil, doc.Errorf(keyNode, "table %s is listed twice", key.Name)
		}
		if list.Kind != yaml.SequenceNode {
			return nil, doc.Errorf(list, "table %s: want a list of rules", key.Name)
		}
		var tableRules []*rule
		for j, n := range list.Content {
			r, err := loadRule(n, j+1)
			if err != nil {
				return nil, doc.Wrap(err, n, fmt.Sprintf("table %s rule %d", key.Name, j+1))
			}
			tableRules = append(tableRules, r)
		}
		s.keys = append(s.keys, key)
		s.rules = append(s.rules, tableRules)
	}
	return s, nil
}

// members returns a map node's members by key, rejecting unknown keys.
func members(n *yaml.Node, prefix string, known ...string) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fieldErr(n, strings.TrimSuffix(prefix, "."), "want a map")
	}
	out := map[string]*yaml.Node{}
	for i := 0; i < len(n.Content); i += 2 {
		key := n.Content[i]
		if !slices.Contains(known, key.Value) {
			return nil, fieldErr(key, prefix+key.Value, "unknown field (want one of %s)", strings.Join(known, ", "))
		}
		out[key.Value] = n.Content[i+1]
	}
	return out, nil
}

var fieldErr = tablefile.FieldErrorf

func scalarString(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return "", fieldErr(n, field, "want a string")
	}
	return n.Value, nil
}

func loadRule(n *yaml.Node, index int) (*rule, error) {
	fields, err := members(n, "", "type", "column", "parameters", "operations", "allow_empty_deletes")
	if err != nil {
		return nil, err
	}
	r := &rule{index: index, ops: allDML}
	typeNode, ok := fields["type"]
	if !ok {
		return nil, fieldErr(n, "type", "missing (want transform or filter)")
	}
	switch typeNode.Value {
	case "transform":
		r.kind = transformRule
	case "filter":
		r.kind = filterRule
	default:
		return nil, fieldErr(typeNode, "type", "unknown rule type %q (want transform or filter)", typeNode.Value)
	}
	colNode, ok := fields["column"]
	if !ok {
		return nil, fieldErr(n, "column", "missing: a rule names the column it reads")
	}
	if r.column, err = scalarString(colNode, "column"); err != nil {
		return nil, err
	}
	if r.column == "" {
		return nil, fieldErr(colNode, "column", "empty")
	}
	paramsNode, ok := fields["parameters"]
	if !ok {
		return nil, fieldErr(n, "parameters", "missing")
	}
	var params map[string]*yaml.Node
	if r.kind == transformRule {
		params, err = members(paramsNode, "parameters.", "type", "pattern", "replace", "mask_char", "operations", "allow_empty_deletes")
	} else {
		params, err = members(paramsNode, "parameters.", "operator", "value", "operations", "allow_empty_deletes")
	}
	if err != nil {
		return nil, err
	}
	// operations and allow_empty_deletes: pg_flo's docs put them at rule
	// level, its code read them in parameters; both places work, and must
	// agree when both are given.
	ops, err := either(fields, params, "operations", parseOps)
	if err != nil {
		return nil, err
	}
	if ops != 0 {
		r.ops = ops
	}
	allow, err := either(fields, params, "allow_empty_deletes", parseBool)
	if err != nil {
		return nil, err
	}
	r.allowEmptyDeletes = allow
	if r.kind == transformRule {
		return r, loadTransform(r, paramsNode, params)
	}
	return r, loadFilter(r, paramsNode, params)
}

// either reads a field given at rule level or in parameters.
func either[T comparable](fields, params map[string]*yaml.Node, name string, parse func(*yaml.Node, string) (T, error)) (T, error) {
	var zero T
	top, inTop := fields[name]
	param, inParams := params[name]
	var a, b T
	var err error
	if inTop {
		if a, err = parse(top, name); err != nil {
			return zero, err
		}
	}
	if inParams {
		if b, err = parse(param, "parameters."+name); err != nil {
			return zero, err
		}
	}
	switch {
	case inTop && inParams && a != b:
		return zero, fieldErr(param, "parameters."+name, "differs from the rule's %s; give it once", name)
	case inTop:
		return a, nil
	}
	return b, nil
}

func parseOps(n *yaml.Node, field string) (opSet, error) {
	if n.Kind != yaml.SequenceNode {
		return 0, fieldErr(n, field, "want a list of INSERT, UPDATE, DELETE")
	}
	if len(n.Content) == 0 {
		return 0, fieldErr(n, field, "empty list: the rule would never apply; omit it for all of INSERT, UPDATE, DELETE")
	}
	var ops opSet
	for _, item := range n.Content {
		bit := opBit(event.Op(strings.ToUpper(item.Value)))
		if bit == 0 || item.Kind != yaml.ScalarNode {
			return 0, fieldErr(item, field, "unknown operation %q (rules apply to INSERT, UPDATE, DELETE)", item.Value)
		}
		ops |= bit
	}
	return ops, nil
}

func parseBool(n *yaml.Node, field string) (bool, error) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		return false, fieldErr(n, field, "want true or false, not %q", n.Value)
	}
	return b, nil
}

func loadTransform(r *rule, paramsNode *yaml.Node, params map[string]*yaml.Node) error {
	typeNode, ok := params["type"]
	if !ok {
		return fieldErr(paramsNode, "parameters.type", "missing (want regex or mask)")
	}
	required := func(name string) (string, error) {
		n, ok := params[name]
		if !ok {
			return "", fieldErr(paramsNode, "parameters."+name, "missing for a %s transform", typeNode.Value)
		}
		return scalarString(n, "parameters."+name)
	}
	var err error
	switch typeNode.Value {
	case "regex":
		r.transform = regexTransform
		var pattern string
		if pattern, err = required("pattern"); err != nil {
			return err
		}
		if r.pattern, err = regexp.Compile(pattern); err != nil {
			return fieldErr(params["pattern"], "parameters.pattern", "invalid regular expression: %v", err)
		}
		if r.replace, err = required("replace"); err != nil {
			return err
		}
		if _, extra := params["mask_char"]; extra {
			return fieldErr(params["mask_char"], "parameters.mask_char", "only for a mask transform")
		}
	case "mask":
		r.transform = maskTransform
		if r.maskChar, err = required("mask_char"); err != nil {
			return err
		}
		if r.maskChar == "" {
			return fieldErr(params["mask_char"], "parameters.mask_char", "empty")
		}
		for _, name := range []string{"pattern", "replace"} {
			if n, extra := params[name]; extra {
				return fieldErr(n, "parameters."+name, "only for a regex transform")
			}
		}
	default:
		return fieldErr(typeNode, "parameters.type", "unknown transform %q (want regex or mask)", typeNode.Value)
	}
	return nil
}

func loadFilter(r *rule, paramsNode *yaml.Node, params map[string]*yaml.Node) error {
	opNode, ok := params["operator"]
	if !ok {
		return fieldErr(paramsNode, "parameters.operator", "missing (want one of %s)", strings.Join(Operators, ", "))
	}
	if !slices.Contains(Operators, opNode.Value) || opNode.Kind != yaml.ScalarNode {
		return fieldErr(opNode, "parameters.operator", "unknown operator %q (want one of %s)", opNode.Value, strings.Join(Operators, ", "))
	}
	r.operator = opNode.Value
	valueNode, ok := params["value"]
	if !ok {
		return fieldErr(paramsNode, "parameters.value", "missing")
	}
	if valueNode.Kind != yaml.ScalarNode || valueNode.Tag == "!!null" {
		return fieldErr(valueNode, "parameters.value", "want a single value (a string, number or boolean), not %s", describeNode(valueNode))
	}
	r.value = valueNode.Value
	switch valueNode.Tag {
	case "!!bool":
		var b bool
		_ = valueNode.Decode(&b)
		r.value = strconv.FormatBool(b)
		if r.operator == "contains" {
			return fieldErr(valueNode, "parameters.value", "contains wants a string, not the boolean %s", valueNode.Value)
		}
	case "!!int", "!!float":
		if r.operator == "contains" {
			// A number's digits as text: pg_flo wanted a quoted string.
			break
		}
		r.value = yamlNumber(valueNode)
		if _, err := strconv.ParseFloat(r.value, 64); err != nil {
			return fieldErr(valueNode, "parameters.value", "%q is not a number", valueNode.Value)
		}
	}
	return nil
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a map"
	}
	return "null"
}

// yamlNumber writes an unquoted YAML number as PostgreSQL reads numbers:
// 0x1F is 31, .inf is Infinity, 1_000 is 1000.
func yamlNumber(n *yaml.Node) string {
	v := strings.ReplaceAll(n.Value, "_", "")
	switch strings.ToLower(v) {
	case ".inf", "+.inf":
		return "Infinity"
	case "-.inf":
		return "-Infinity"
	case ".nan":
		return "NaN"
	}
	if n.Tag == "!!int" {
		if i, err := strconv.ParseInt(v, 0, 64); err == nil {
			return strconv.FormatInt(i, 10)
		}
	}
	return strings.TrimPrefix(v, "+")
}
