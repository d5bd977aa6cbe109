package benchkit

import "fmt"

// StreamReplicator is the input and output of a replicator streaming table
// of the source dsn (mode: stream) into group's JetStream stream on natsURL;
// extra are more pg_flo_jetstream fields (YAML lines indented by four).
func StreamReplicator(dsn, group, table, natsURL, extra string) string {
	return fmt.Sprintf(`input:
  pg_flo_replicator:
    dsn: %q
    group: %s
    tables: [%s]
    mode: stream
output:
  pg_flo_jetstream:
    url: %q
    group: %s
%s`, dsn, group, table, natsURL, group, extra)
}
