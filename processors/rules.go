package processors

import (
	"context"
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/rules"
)

// Field names of pg_flo_rules.
const (
	rulesFieldFile   = "rules_file"
	rulesFieldInline = "rules"
)

func rulesSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Mapping").
		Summary("Applies pg_flo's transform rules (regex, mask) and filter rules (eq, ne, gt, lt, gte, lte, contains) to change events, per table and per operation, from pg_flo's rules file unchanged.").
		Description(`
Reads pg_flo's rules file (`+"`--rules-config`"+`) as it is, or the same YAML inline, and applies the rules of
each event's table in file order: a transform rewrites a column's value, a filter that is false removes
the event from the batch (it is acknowledged with the rest, so nothing stalls). Rules work on raw and
typed events (after `+"`pg_flo_decode`"+`) alike, and write values back in the event's own form.

Filters compare by the column's type (integers and numerics exactly, floats, booleans, timestamps as
instants, dates, times, intervals, uuids, text by bytes); masks keep the first and the last character,
never splitting a multibyte character; `+"`operations`"+` and `+"`allow_empty_deletes`"+` work at rule level and in
`+"`parameters`"+`. docs/rules.md is the reference, with every difference from pg_flo.

A bad file (unknown rule type or operator, a bad regular expression, a missing field) fails at start, and
`+"`pgflo lint`"+` reports it, naming the file, line, table, rule and field. A rule that cannot be evaluated
on an event (its column is not in the table, a value that does not fit the column's type) leaves the event
unchanged and flags it with an error naming table, rule and column (`+"`errored()`"+` in Bloblang; wrap the
output in `+"`reject_errored`"+` to stop and retry instead of delivering it).

A message holding packed snapshot rows (`+"`pg_flo_pack_rows`"+`, from `+"`pg_flo_replicator`"+` or from `+"`pg_flo_worker`"+` with
`+"`snapshot_packs: keep`"+`) is expanded first into one change event message per row, so every row is seen by the rules.`).
		Fields(
			service.NewStringField(rulesFieldFile).
				Description("Path of a pg_flo rules file (YAML, top-level key `tables`). Give this or `rules`.").
				Default("").
				Example("./rules.yaml"),
			service.NewAnyField(rulesFieldInline).
				Description("The rules file's content inline: a map with the key `tables`. Give this or `rules_file`.").
				Optional(),
		).
		LintRule(`root = pg_flo_lint_rules(this.`+rulesFieldFile+`.or(""), this.`+rulesFieldInline+`)`).
		Example("pg_flo's example rules", "Mask emails and social security numbers, format phone numbers, and keep adults only.", `
pipeline:
  processors:
    - pg_flo_rules:
        rules:
          tables:
            users:
              - type: transform
                column: email
                parameters: { type: mask, mask_char: "*" }
                operations: [INSERT, UPDATE, DELETE]
              - type: transform
                column: phone
                parameters: { type: regex, pattern: '^(\d{3})(\d{3})(\d{4})$', replace: '($1) $2-$3' }
              - type: filter
                column: age
                parameters: { operator: gte, value: 18, allow_empty_deletes: true }
`)
}

func init() {
	err := service.RegisterBatchProcessor("pg_flo_rules", rulesSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			set, err := loadSource(conf, rulesFieldFile, rulesFieldInline, rulesFrom)
			if err != nil {
				return nil, err
			}
			p := &rulesProcessor{set: set}
			p.editor = newEditor(mgr.Logger(), p.edit, nil)
			return p, nil
		})
	if err != nil {
		panic(err)
	}
}

// errRulesSource is a pg_flo_rules config without exactly one rules source.
var errRulesSource = errors.New("pg_flo_rules: give exactly one of rules_file and rules")

func rulesFrom(file string, inline any) (*rules.Set, error) {
	return fromFileOrInline(file, inline, errRulesSource, rules.LoadFile, rules.LoadInline, "pg_flo_rules."+rulesFieldInline)
}

// rulesProcessor is pg_flo_rules.
type rulesProcessor struct {
	set    *rules.Set
	editor *editor
}

func (p *rulesProcessor) edit(ev *change.Event) (bool, error) {
	res, err := p.set.Apply(ev)
	return res == rules.Keep, err
}

// ProcessBatch applies the rules to every event of the batch (every row of
// a pack).
func (p *rulesProcessor) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	return p.editor.process(batch), nil
}

// Close does nothing: the processor holds no resources.
func (p *rulesProcessor) Close(context.Context) error { return nil }
