package processors

import (
	"context"
	"errors"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/change"
	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/routing"
)

// Field names of pg_flo_route.
const (
	routeFieldFile   = "routing_file"
	routeFieldInline = "routes"
)

func routeSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Beta().
		Categories("Mapping").
		Summary("Applies pg_flo's routing to change events: renames tables and columns (key columns too) and keeps only the listed operations, from pg_flo's routing file unchanged.").
		Description(`
Reads pg_flo's routing file (`+"`--routing-config`"+`) as it is, or the same YAML inline: per source table a
`+"`destination_table`"+`, `+"`column_mappings`"+` (`+"`{source, destination}`"+`) and `+"`operations`"+`. A routed event gets the
destination table's name (in the event and in the `+"`pg_flo_table`"+` metadata, so `+"`pg_flo_postgres`"+` and any
output routing on metadata write to it) and its columns renamed wherever they appear (`+"`columns`"+`, `+"`new`"+`,
`+"`old`"+`, `+"`unchanged_toast`"+`). An event whose operation the route does not list is removed from the batch (and
acknowledged with the rest). Tables without a route pass unchanged.

Differences from pg_flo (docs/routing.md): an omitted `+"`operations`"+` keeps every operation (pg_flo dropped
every event of the table then, although its README said otherwise); `+"`destination_schema`"+` moves a table to
another schema (also in `+"`pg_flo_schema`"+`); a key may be `+"`schema.table`"+`; a bad file fails at start and in
`+"`pgflo lint`"+`. Put `+"`pg_flo_route`"+` after `+"`pg_flo_rules`"+`: rules name source tables and columns.

A message holding packed snapshot rows (`+"`pg_flo_pack_rows`"+`, from `+"`pg_flo_replicator`"+` or from `+"`pg_flo_worker`"+` with
`+"`snapshot_packs: keep`"+`) is expanded first into one change event message per row, so every row is routed.`).
		Fields(
			service.NewStringField(routeFieldFile).
				Description("Path of a pg_flo routing file (YAML: source table → route). Give this or `routes`.").
				Default("").
				Example("./routing.yaml"),
			service.NewAnyField(routeFieldInline).
				Description("The routing file's content inline. Give this or `routing_file`.").
				Optional(),
		).
		LintRule(`root = pg_flo_lint_routes(this.`+routeFieldFile+`.or(""), this.`+routeFieldInline+`)`).
		Example("Rename a table and a column", "Source table users becomes customers, its id column customer_id; deletes are not replicated.", `
pipeline:
  processors:
    - pg_flo_route:
        routes:
          users:
            destination_table: customers
            column_mappings:
              - { source: id, destination: customer_id }
            operations: [INSERT, UPDATE]
`)
}

func init() {
	err := service.RegisterBatchProcessor("pg_flo_route", routeSpec(),
		func(conf *service.ParsedConfig, mgr *service.Resources) (service.BatchProcessor, error) {
			router, err := loadSource(conf, routeFieldFile, routeFieldInline, routesFrom)
			if err != nil {
				return nil, err
			}
			return &routeProcessor{editor: newEditor(mgr.Logger(), router.Apply, setRouteMeta)}, nil
		})
	if err != nil {
		panic(err)
	}
}

// errRoutesSource is a pg_flo_route config without exactly one routing source.
var errRoutesSource = errors.New("pg_flo_route: give exactly one of routing_file and routes")

func routesFrom(file string, inline any) (*routing.Router, error) {
	return fromFileOrInline(file, inline, errRoutesSource, routing.LoadFile, routing.LoadInline, "pg_flo_route."+routeFieldInline)
}

// routeProcessor is pg_flo_route.
type routeProcessor struct {
	editor *editor
}

// ProcessBatch routes every event of the batch (every row of a pack).
func (p *routeProcessor) ProcessBatch(_ context.Context, batch service.MessageBatch) ([]service.MessageBatch, error) {
	return p.editor.process(batch), nil
}

// setRouteMeta points pg_flo_table and pg_flo_schema where the event goes
// now, for outputs that route by metadata, and keeps where it came from in
// pg_flo_source_schema and pg_flo_source_table (the first route's source,
// when routes are chained), for schema sync.
func setRouteMeta(ev *change.Event, msg *service.Message) {
	schema, _ := msg.MetaGet(event.MetaSchema)
	table, _ := msg.MetaGet(event.MetaTable)
	if _, routed := msg.MetaGet(event.MetaSourceTable); !routed && table != "" && (table != ev.Table || schema != ev.Schema) {
		msg.MetaSetMut(event.MetaSourceSchema, schema)
		msg.MetaSetMut(event.MetaSourceTable, table)
	}
	setMeta(msg, event.MetaTable, ev.Table)
	setMeta(msg, event.MetaSchema, ev.Schema)
}

// setMeta sets a metadata value unless it has it already: a change copies
// the message's metadata.
func setMeta(msg *service.Message, key, value string) {
	if current, ok := msg.MetaGet(key); !ok || current != value {
		msg.MetaSetMut(key, value)
	}
}

// Close does nothing: the processor holds no resources.
func (p *routeProcessor) Close(context.Context) error { return nil }
