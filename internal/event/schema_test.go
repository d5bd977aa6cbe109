package event

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeipuuv/gojsonschema"
)

// schemaFile is the published JSON Schema of the change event.
var schemaFile = filepath.Join("..", "..", "docs", "event.schema.json")

func loadSchema(t *testing.T) *gojsonschema.Schema {
	t.Helper()
	raw, err := os.ReadFile(schemaFile)
	if err != nil {
		t.Fatalf("read the event schema: %v", err)
	}
	schema, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(raw))
	if err != nil {
		t.Fatalf("compile %s: %v", schemaFile, err)
	}
	return schema
}

func validate(t *testing.T, schema *gojsonschema.Schema, doc []byte) []string {
	t.Helper()
	res, err := schema.Validate(gojsonschema.NewBytesLoader(doc))
	if err != nil {
		t.Fatalf("validate %s: %v", doc, err)
	}
	var problems []string
	for _, e := range res.Errors() {
		problems = append(problems, e.String())
	}
	return problems
}

// TestSchemaAcceptsEncodedEvents validates what AppendJSON writes against
// docs/event.schema.json, so the published schema and the encoder cannot
// drift apart.
func TestSchemaAcceptsEncodedEvents(t *testing.T) {
	schema := loadSchema(t)
	for _, tc := range sampleEvents() {
		t.Run(tc.name, func(t *testing.T) {
			data := tc.ev.AppendJSON(nil)
			if problems := validate(t, schema, data); len(problems) > 0 {
				t.Errorf("%s\ndoes not match %s:\n  %s", data, schemaFile, strings.Join(problems, "\n  "))
			}
		})
	}
}

// TestSchemaRejectsContractViolations proves the schema is not vacuous: each
// document breaks one rule of docs/event.md.
func TestSchemaRejectsContractViolations(t *testing.T) {
	schema := loadSchema(t)
	insert := sampleEvents()[0].ev
	base := string(insert.AppendJSON(nil))
	replace := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("fixture %s lacks %s", base, old)
		}
		return strings.Replace(base, old, new, 1)
	}
	update := Event{Op: Update, Schema: "s", Table: "t", New: Row{text("id", "1")}, Old: Row{text("id", "1")}}
	cases := []struct{ name, doc string }{
		{"version 2", replace(`"v":1`, `"v":2`)},
		{"unknown op", replace(`"op":"INSERT"`, `"op":"MERGE"`)},
		{"missing field", replace(`,"snapshot":false`, ``)},
		{"extra field", replace(`"v":1,`, `"v":1,"extra":true,`)},
		{"numeric value", replace(`"id":"42"`, `"id":42`)},
		{"boolean value", replace(`"id":"42"`, `"id":true`)},
		{"lsn as a number", replace(`"lsn":"0/16B3748"`, `"lsn":23803720`)},
		{"lsn without slash", replace(`"lsn":"0/16B3748"`, `"lsn":"16B3748"`)},
		{"commit_time with offset", replace(`Z"`, `+00:00"`)},
		{"commit_time without microseconds", replace(`.123456Z"`, `Z"`)},
		{"negative xid", replace(`"xid":757`, `"xid":-1`)},
		{"column without oid", replace(`,"oid":20`, ``)},
		{"column with unknown field", replace(`"oid":20,`, `"oid":20,"nullable":true,`)},
		{"insert with old row", replace(`"old":null`, `"old":{"id":"42"}`)},
		{"insert without new row", replace(`"new":{"id":"42","email":"a@b.c","bio":null,"tags":"{a,\"b c\",NULL}"}`, `"new":null`)},
		{"unchanged_toast null", replace(`"unchanged_toast":[]`, `"unchanged_toast":null`)},
		{"unchanged_toast on insert", replace(`"unchanged_toast":[]`, `"unchanged_toast":["bio"]`)},
		{"update without old", strings.Replace(string(update.AppendJSON(nil)), `"old":{"id":"1"}`, `"old":null`, 1)},
		{"snapshot delete", strings.Replace(string((&Event{Op: Delete, Old: Row{}}).AppendJSON(nil)), `"snapshot":false`, `"snapshot":true`, 1)},
		{"truncate with rows", strings.Replace(string((&Event{Op: Truncate}).AppendJSON(nil)), `"new":null`, `"new":{}`, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if problems := validate(t, schema, []byte(tc.doc)); len(problems) == 0 {
				t.Errorf("%s accepted\n%s", schemaFile, tc.doc)
			}
		})
	}
}

// TestDocExamples keeps docs/event.md honest: every JSON example in it is a
// valid event for both the decoder and the schema, and re-encodes to the
// same document.
func TestDocExamples(t *testing.T) {
	schema := loadSchema(t)
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "event.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(raw), "```json\n")[1:]
	if len(blocks) < 3 {
		t.Fatalf("docs/event.md has %d JSON examples, want at least 3 (INSERT, UPDATE, DELETE)", len(blocks))
	}
	for i, block := range blocks {
		example := block[:strings.Index(block, "```")]
		ev, err := decode([]byte(example))
		if err != nil {
			t.Errorf("example %d does not decode: %v\n%s", i+1, err, example)
			continue
		}
		if problems := validate(t, schema, []byte(example)); len(problems) > 0 {
			t.Errorf("example %d does not match the schema:\n  %s", i+1, strings.Join(problems, "\n  "))
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(example)); err != nil {
			t.Fatal(err)
		}
		if encoded := ev.AppendJSON(nil); string(encoded) != compact.String() {
			t.Errorf("example %d is not what pgflo writes:\n doc: %s\nours: %s", i+1, compact.String(), encoded)
		}
	}
}
