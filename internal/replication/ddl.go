package replication

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/event"
)

// DDL capture. pg_flo polls a side table every second, so its DDL can
// overtake or lag the rows around it. pgflo's event trigger writes each
// captured command into the WAL as a transactional logical decoding message
// (pg_logical_emit_message), which pgoutput (option messages) delivers inside
// the command's transaction, in commit order with the data. Functions and
// triggers are named per publication, so groups never clobber each other.

// ddlColumns describe a DDL event's new row.
var ddlColumns = []event.Column{
	{Name: event.DDLCommandColumn, Type: "text", OID: 25},
	{Name: event.DDLTagColumn, Type: "text", OID: 25},
}

// DDLPrefix is the logical message prefix of a publication's DDL capture.
func DDLPrefix(publication string) string { return "pgflo_ddl:" + publication }

// ddlObjectName names the capture function and event trigger of a
// publication (identifiers are limited to 63 bytes).
func ddlObjectName(publication string) string {
	name := "pgflo_ddl_" + strings.ToLower(publication)
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

// DDLCaptureObjects names what installDDLCapture creates for a
// publication: the function's schema, and the name of both the capture
// function and the event trigger, so `pgflo cleanup` removes exactly those.
func DDLCaptureObjects(publication string) (schema, name string) {
	return "pgflo", ddlObjectName(publication)
}

// installDDLCapture creates (or replaces) the publication's capture
// function and event trigger. It needs superuser: event triggers are
// superuser-only.
func installDDLCapture(ctx context.Context, conn *pgx.Conn, publication string) error {
	name := ddlObjectName(publication)
	fn := pgx.Identifier{"pgflo", name}.Sanitize()
	guc := "pgflo." + name
	body := fmt.Sprintf(`
CREATE SCHEMA IF NOT EXISTS pgflo;
CREATE OR REPLACE FUNCTION %[1]s() RETURNS event_trigger LANGUAGE plpgsql AS $pgflo$
DECLARE
  cmd record;
  rel oid;
  sch text;
  tbl text;
  query text := current_query();
BEGIN
  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE classid = 'pg_class'::regclass AND object_type IN ('table', 'table column', 'index')
  LOOP
    rel := cmd.objid;
    IF cmd.object_type = 'index' THEN
      SELECT indrelid INTO rel FROM pg_index WHERE indexrelid = cmd.objid;
    END IF;
    SELECT n.nspname, c.relname INTO sch, tbl FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel;
    -- One message per statement text and transaction: a multi-statement
    -- query fires the trigger once per command, with the same text.
    IF EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = %[2]s AND schemaname = sch AND tablename = tbl)
       AND current_setting(%[3]s, true) IS DISTINCT FROM md5(query) THEN
      PERFORM set_config(%[3]s, md5(query), true);
      PERFORM pg_logical_emit_message(true, %[4]s,
        json_build_object('schema', sch, 'table', tbl, 'command_tag', cmd.command_tag, 'ddl_command', query)::text);
    END IF;
  END LOOP;
END
$pgflo$;
DROP EVENT TRIGGER IF EXISTS %[5]s;
CREATE EVENT TRIGGER %[5]s ON ddl_command_end EXECUTE FUNCTION %[1]s();`,
		fn, quoteLiteral(publication), quoteLiteral(guc), quoteLiteral(DDLPrefix(publication)), pgx.Identifier{name}.Sanitize())
	if _, err := conn.Exec(ctx, body); err != nil {
		return fmt.Errorf("field track_ddl: install the DDL capture trigger %s (event triggers need a superuser): %w", name, err)
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal.
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// ddlMessage is the content of a captured command's logical message.
type ddlMessage struct {
	Schema     string `json:"schema"`
	Table      string `json:"table"`
	CommandTag string `json:"command_tag"`
	DDLCommand string `json:"ddl_command"`
}

// ddlEvent turns a captured command into a DDL event.
func (d *Decoder) ddlEvent(content []byte, walStart pglogrepl.LSN) (*event.Event, error) {
	var msg ddlMessage
	if err := json.Unmarshal(content, &msg); err != nil {
		return nil, fmt.Errorf("decode DDL message at %s: %w", walStart, err)
	}
	ev := &event.Event{
		V: event.Version, Op: event.DDL, Schema: msg.Schema, Table: msg.Table,
		CommitLSN: d.commitLSN, Xid: d.xid, CommitTime: d.commitTime, Columns: ddlColumns,
		LSN: walStart,
		New: event.Row{{Name: event.DDLCommandColumn, Text: msg.DDLCommand}, {Name: event.DDLTagColumn, Text: msg.CommandTag}},
	}
	d.pos++
	return ev, nil
}
