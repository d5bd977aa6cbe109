package processors

import (
	"context"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/change"
)

func decodeSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Parsing").
		Summary("Turns a raw pg_flo change event's values (PostgreSQL text) into typed JSON: numbers, booleans, RFC 3339 times, nested JSON, arrays, ranges — without losing anything.").
		Description(`
A raw change event carries every value as PostgreSQL's text output (`+"`\"42\"`, `\"t\"`, `\"{1,2}\"`"+`).
This processor rewrites the values of `+"`new`"+` and `+"`old`"+` as typed JSON and adds `+"`\"typed\": true`"+` to the
event; everything else stays as it was. Integers and numerics become exact JSON numbers (never rounded:
an int8 beyond 2^53 or a numeric with 30 digits keeps every digit), NaN and ±Infinity become strings,
`+"`t`/`f`"+` become `+"`true`/`false`"+`, timestamps and dates become RFC 3339 strings (`+"`infinity`"+` kept), bytea
becomes base64, json and jsonb become nested JSON, arrays become JSON arrays (NULL elements as `+"`null`"+`,
several dimensions as nested arrays), ranges become objects. docs/decode.md lists every type.

Decoding is lossless: pg_flo_postgres writes a typed event back exactly as the source had it (it turns
each value back into PostgreSQL's text form), and pg_flo_rules and pg_flo_route work on typed and raw
events alike. Decode where people or other systems read the events (files, HTTP, Kafka); a pipeline
that only replicates into PostgreSQL does not need it.

An event that is already typed passes unchanged. A message that is not a change event, or a value that is
not valid text of its column's type, is left unchanged and flagged with an error (`+"`errored()`"+` in
Bloblang), and the error is logged.

A message holding packed snapshot rows (`+"`pg_flo_pack_rows`"+`, from `+"`pg_flo_replicator`"+` or from `+"`pg_flo_worker`"+` with
`+"`snapshot_packs: keep`"+`) is expanded first into one change event message per row, so every row is decoded.`).
		Example("Typed events to a file", "Human-readable changes, one JSON document per line.", `
input:
  pg_flo_worker:
    url: nats://localhost:4222
    group: users
pipeline:
  processors:
    - pg_flo_decode: {}
output:
  file:
    path: ./changes.jsonl
    codec: lines
`)
}

func init() {
	err := service.RegisterBatchProcessor("pg_flo_decode", decodeSpec(),
		func(_ *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			return &decodeProcessor{editor: newEditor(mgr.Logger(), decodeEvent, nil)}, nil
		})
	if err != nil {
		panic(err)
	}
}

// decodeProcessor is pg_flo_decode.
type decodeProcessor struct {
	editor *editor
}

func decodeEvent(ev *change.Event) (bool, error) { return true, ev.Decode() }

// ProcessBatch decodes every event of the batch (every row of a pack).
func (p *decodeProcessor) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	return p.editor.process(batch), nil
}

// Close does nothing: the processor holds no resources.
func (p *decodeProcessor) Close(context.Context) error { return nil }
