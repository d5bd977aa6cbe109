package docgen_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/docgen"
	_ "github.com/pgflo/pgflo/internal/docgen/components"
)

// committedDir is where the generated pages are committed.
var committedDir = filepath.Join("..", "..", "docs", "components")

const staleHint = "docs/components is stale: run `go run ./internal/docgen/cmd` (or make docs)"

// TestCommittedDocsAreCurrent regenerates the pages of every registered
// pgflo component and compares them with the committed ones.
func TestCommittedDocsAreCurrent(t *testing.T) {
	fresh := t.TempDir()
	if err := docgen.Generate(service.GlobalEnvironment(), fresh); err != nil {
		t.Fatalf("generate: %v", err)
	}
	want := listPages(t, fresh)
	got := listPages(t, committedDir)
	for _, name := range want {
		generated, err := os.ReadFile(filepath.Join(fresh, name))
		if err != nil {
			t.Fatal(err)
		}
		committed, err := os.ReadFile(filepath.Join(committedDir, name))
		switch {
		case os.IsNotExist(err):
			t.Errorf("%s: %s is missing", staleHint, name)
		case err != nil:
			t.Fatal(err)
		case string(committed) != string(generated):
			t.Errorf("%s: %s differs from what the config spec generates", staleHint, name)
		}
	}
	for _, name := range got {
		if !slices.Contains(want, name) {
			t.Errorf("%s: %s documents no registered component", staleHint, name)
		}
	}
}

func listPages(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".md") {
			names = append(names, e.Name())
		}
	}
	return names
}

// TestEveryComponentIsDocumented guards the registration list: each
// component the design names must be registered (once its package exists)
// and documented by a complete spec.
func TestEveryComponentIsDocumented(t *testing.T) {
	components := docgen.Components(service.GlobalEnvironment())
	if len(components) == 0 {
		t.Fatal("no pg_flo_ component is registered: internal/docgen/components imports none")
	}
	for _, c := range components {
		page, err := docgen.Render(c)
		if err != nil {
			t.Errorf("render %s: %v", c.Name, err)
			continue
		}
		if strings.Contains(string(page), "Sorry! This field is missing documentation.") {
			t.Errorf("%s %s has a field without a description", c.Kind, c.Name)
		}
	}
}

// testEnvironment holds one fake pgflo processor exercising every part of
// the page, and a stock-looking component that must not be documented.
func testEnvironment(t *testing.T) *service.Environment {
	t.Helper()
	env := service.NewEmptyEnvironment()
	spec := service.NewConfigSpec().
		Beta().
		Categories("Utility").
		Summary("Does a test thing.").
		Description("\nLonger description | with a pipe.\n\n### A section\n\nText.").
		Fields(
			service.NewStringField("url").Description("Where to connect.").Example("nats://localhost:4222").Secret(),
			service.NewStringEnumField("mode", "fast", "slow").Description("How.").Default("fast"),
			service.NewStringAnnotatedEnumField("policy", map[string]string{"keep": "Keep it.", "drop": "Drop it."}).
				Description("What to do.").Default("keep"),
			service.NewStringListField("tables").Description("Which tables.").Optional(),
			service.NewIntField("batch").Description("Batch size.").Default(10).Advanced(),
			service.NewInterpolatedStringField("subject").Description("Subject.").Default("pgflo.${! meta(\"pg_flo_table\") }"),
			service.NewObjectField("tls",
				service.NewBoolField("enabled").Description("Use TLS.").Default(false),
			).Description("TLS settings."),
		).
		Example("Basic", "The simplest use.", `
pipeline:
  processors:
    - pg_flo_test:
        url: nats://localhost:4222
`)
	noop := func(*service.ParsedConfig, *service.Resources) (service.Processor, error) {
		return noopProcessor{}, nil
	}
	if err := env.RegisterProcessor("pg_flo_test", spec, noop); err != nil {
		t.Fatal(err)
	}
	if err := env.RegisterProcessor("not_ours", service.NewConfigSpec().Summary("Stock."), noop); err != nil {
		t.Fatal(err)
	}
	return env
}

type noopProcessor struct{}

func (noopProcessor) Process(_ context.Context, m *service.Message) (service.MessageBatch, error) {
	return service.MessageBatch{m}, nil
}
func (noopProcessor) Close(context.Context) error { return nil }

func TestRenderPage(t *testing.T) {
	files, err := docgen.Files(testEnvironment(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := files["not_ours.md"]; ok {
		t.Error("a component without the pg_flo_ prefix was documented")
	}
	page := string(files["pg_flo_test.md"])
	for _, want := range []string{
		docgen.Generated + "\n\n# pg_flo_test\n",
		"**processor** · beta · Utility",
		"Does a test thing.",
		"## Overview\n\nLonger description | with a pipe.\n\n### A section",
		"### `url`\n\nWhere to connect.\n\nType: `string`. Required.",
		"This field holds a secret",
		"url: \"\" # No default (required)",
		"Options: `fast`, `slow`.",
		"| `drop` | Drop it. |\n| `keep` | Keep it. |",
		"### `tables`\n\nWhich tables.\n\nType: `array of string`. Optional.",
		"Type: `int`. Default: `10`. Advanced.",
		"Supports [interpolation functions]",
		"### `tls`\n\nTLS settings.\n\nType: `object`.\n",
		"### `tls.enabled`",
		"Type: `bool`. Default: `false`.",
		"## Examples\n\n### Basic\n\nThe simplest use.\n\n```yaml\npipeline:",
		"<details>",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q\n---\n%s", want, page)
		}
	}
	if strings.Contains(page, "SECRET_SCRUBBED") {
		t.Errorf("page shows Benthos' scrub placeholder:\n%s", page)
	}
	if strings.Contains(page, "\n\n\n") || strings.Contains(page, " \n") || !strings.HasSuffix(page, "```\n") {
		t.Errorf("page is not tidy (blank-line runs, trailing spaces or missing final newline):\n%q", page)
	}

	index := string(files[docgen.IndexFile])
	if !strings.Contains(index, "| [`pg_flo_test`](pg_flo_test.md) | processor | Does a test thing. |") {
		t.Errorf("index lacks the component row:\n%s", index)
	}
}

func TestGenerateRemovesStalePages(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"pg_flo_gone.md", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := docgen.Generate(testEnvironment(t), dir); err != nil {
		t.Fatal(err)
	}
	got := listPages(t, dir)
	slices.Sort(got)
	if want := []string{docgen.IndexFile, "pg_flo_test.md"}; !slices.Equal(got, want) {
		t.Errorf("pages after Generate = %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "notes.txt")); err != nil {
		t.Errorf("Generate removed a file it does not own: %v", err)
	}
}

// TestGenerateIsDeterministic guards the staleness check against map
// iteration order and the like.
func TestGenerateIsDeterministic(t *testing.T) {
	env := service.GlobalEnvironment()
	first, err := docgen.Files(env)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, err := docgen.Files(env)
		if err != nil {
			t.Fatal(err)
		}
		for name, content := range first {
			if string(again[name]) != string(content) {
				t.Fatalf("%s differs between two runs", name)
			}
		}
	}
}
