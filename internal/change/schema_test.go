package change

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xeipuuv/gojsonschema"

	"github.com/pgflo/pgflo/internal/event/eventtest"
)

var typedSchemaFile = filepath.Join("..", "..", "docs", "event-typed.schema.json")

func typedSchema(t *testing.T) *gojsonschema.Schema {
	t.Helper()
	raw, err := os.ReadFile(typedSchemaFile)
	if err != nil {
		t.Fatal(err)
	}
	schema, err := gojsonschema.NewSchema(gojsonschema.NewBytesLoader(raw))
	if err != nil {
		t.Fatalf("compile %s: %v", typedSchemaFile, err)
	}
	return schema
}

func schemaProblems(t *testing.T, schema *gojsonschema.Schema, doc []byte) []string {
	t.Helper()
	res, err := schema.Validate(gojsonschema.NewBytesLoader(doc))
	if err != nil {
		t.Fatalf("validate %s: %v", doc, err)
	}
	var out []string
	for _, e := range res.Errors() {
		out = append(out, e.String())
	}
	return out
}

// TestTypedSchema: what Decode writes matches docs/event-typed.schema.json,
// and the schema rejects raw events and untyped rows.
func TestTypedSchema(t *testing.T) {
	schema := typedSchema(t)
	ev := sampleEvent()
	typed := typedJSON(t, ev)
	if problems := schemaProblems(t, schema, typed); len(problems) > 0 {
		t.Errorf("typed event does not match the schema:\n  %s\n%s", strings.Join(problems, "\n  "), typed)
	}
	raw := ev.AppendJSON(nil)
	if problems := schemaProblems(t, schema, raw); len(problems) == 0 {
		t.Errorf("the typed schema accepts a raw event: %s", raw)
	}
	if problems := schemaProblems(t, schema, bytes.Replace(typed, []byte(`,"typed":true`), []byte(`,"typed":false`), 1)); len(problems) == 0 {
		t.Error(`the typed schema accepts "typed": false`)
	}
}

// TestDecodeDocExample keeps docs/decode.md honest: its raw example decodes
// to its typed example, which matches the schema.
func TestDecodeDocExample(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "decode.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(doc[bytes.Index(doc, []byte("## Example")):])
	blocks := strings.Split(text, "```json\n")[1:]
	if len(blocks) != 2 {
		t.Fatalf("docs/decode.md's Example has %d JSON blocks, want 2 (raw, typed)", len(blocks))
	}
	raw := strings.TrimSpace(blocks[0][:strings.Index(blocks[0], "```")])
	want := blocks[1][:strings.Index(blocks[1], "```")]
	if _, err := eventtest.Decode([]byte(raw)); err != nil {
		t.Fatalf("the raw example is not a raw event: %v", err)
	}
	ev, err := Parse([]byte(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Decode(); err != nil {
		t.Fatal(err)
	}
	got := ev.AppendJSON(nil)
	var gotCompact, wantCompact bytes.Buffer
	if err := json.Compact(&gotCompact, got); err != nil {
		t.Fatal(err)
	}
	if err := json.Compact(&wantCompact, []byte(want)); err != nil {
		t.Fatalf("the typed example is not JSON: %v", err)
	}
	if gotCompact.String() != wantCompact.String() {
		t.Errorf("pg_flo_decode writes\n%s\ndocs/decode.md shows\n%s", gotCompact.String(), wantCompact.String())
	}
	if problems := schemaProblems(t, typedSchema(t), wantCompact.Bytes()); len(problems) > 0 {
		t.Errorf("the typed example does not match the schema: %s", strings.Join(problems, "; "))
	}
}
