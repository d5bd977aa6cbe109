package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
)

// copyPipe times the table copied from the source into target by COPY TO
// piped into COPY FROM, in n ctid page ranges on n pairs of connections
// (opened before the clock starts), concurrently.
func (b *bench) copyPipe(ctx context.Context, target string, n int) (benchkit.Measurement, error) {
	m := benchkit.Measurement{Reader: "COPY big TO STDOUT → COPY big FROM STDIN (1 pipe)"}
	if n > 1 {
		m.Reader = fmt.Sprintf("the same in %d ctid ranges (%d pipes, concurrently)", n, n)
	}
	var blocks int64
	if err := benchkit.QueryRow(ctx, b.source, "SELECT pg_relation_size('"+table+"') / current_setting('block_size')::bigint", &blocks); err != nil {
		return m, err
	}
	type pair struct{ from, to *pgx.Conn }
	pairs := make([]pair, n)
	defer func() {
		for _, p := range pairs {
			for _, c := range []*pgx.Conn{p.from, p.to} {
				if c != nil {
					c.Close(context.Background())
				}
			}
		}
	}()
	for i := range pairs {
		var err error
		if pairs[i].from, err = pgx.Connect(ctx, b.source); err != nil {
			return m, err
		}
		if pairs[i].to, err = pgx.Connect(ctx, b.dsn(target)); err != nil {
			return m, err
		}
	}
	rows := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	begin := make(chan struct{})
	for i, p := range pairs {
		query := "COPY " + table + " TO STDOUT"
		if n > 1 {
			from, to := blocks*int64(i)/int64(n), blocks*int64(i+1)/int64(n)
			if i == n-1 {
				to = 1<<32 - 1 // to the end: rows of any later page too
			}
			query = fmt.Sprintf("COPY (SELECT * FROM %s WHERE ctid >= '(%d,0)'::tid AND ctid < '(%d,0)'::tid) TO STDOUT", table, from, to)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-begin
			pr, pw := io.Pipe()
			readErr := make(chan error, 1)
			go func() {
				_, err := p.from.PgConn().CopyTo(ctx, pw, query)
				pw.CloseWithError(err)
				readErr <- err
			}()
			tag, err := p.to.PgConn().CopyFrom(ctx, pr, "COPY "+table+" FROM STDIN")
			pr.CloseWithError(errors.New("COPY FROM ended"))
			errs[i] = errors.Join(err, <-readErr)
			rows[i] = tag.RowsAffected()
		}()
	}
	start := time.Now()
	close(begin)
	wg.Wait()
	m.Seconds = time.Since(start).Seconds()
	var total int64
	for i := range pairs {
		if errs[i] != nil {
			return m, fmt.Errorf("%s: %w", m.Reader, errs[i])
		}
		total += rows[i]
	}
	if total != int64(b.o.rows) {
		return m, fmt.Errorf("%s: copied %d rows, want %d", m.Reader, total, b.o.rows)
	}
	m.OK = true
	return m, nil
}

// nativeInitialSync creates the subscription (its slot first, as pgflo's
// replicator does before its clock stops) and times it until the table is
// ready; then disables it for the backlog.
func (b *bench) nativeInitialSync(ctx context.Context) (benchkit.Measurement, error) {
	m := benchkit.Measurement{Reader: "native logical replication: CREATE SUBSCRIPTION (copy_data) until the table is ready"}
	if err := benchkit.ExecAll(ctx, b.source, "SELECT pg_create_logical_replication_slot('"+nativeSlot+"', 'pgoutput')"); err != nil {
		return m, err
	}
	conn, err := pgx.Connect(ctx, b.dsn(targetNative))
	if err != nil {
		return m, err
	}
	defer conn.Close(context.Background())
	source0, target0 := b.clusterCPU()
	start := time.Now()
	_, err = conn.Exec(ctx, fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION 'host=127.0.0.1 port=%d dbname=%s user=postgres'
		PUBLICATION %s WITH (create_slot = false, slot_name = '%s', copy_data = true)`, nativeSlot, b.pg.Port(), sourceDB, publication, nativeSlot))
	if err != nil {
		return m, fmt.Errorf("create subscription: %w", err)
	}
	took, err := benchkit.Poll(ctx, start, pollEvery, b.o.timeout, "native initial sync", func() (bool, error) {
		var state string
		err := conn.QueryRow(ctx, "SELECT srsubstate::text FROM pg_subscription_rel WHERE srrelid = '"+table+"'::regclass").Scan(&state)
		return state == "r", err
	})
	if err != nil {
		return m, err
	}
	m.Seconds, m.OK = took.Seconds(), true
	b.nativeSyncCPU = b.syncCPUSince(source0, target0)
	if _, err := conn.Exec(ctx, "ALTER SUBSCRIPTION "+nativeSlot+" DISABLE"); err != nil {
		return m, err
	}
	// The apply worker exits in the background; the slot must be free
	// before the backlog is written, so it is all a backlog.
	_, err = benchkit.Poll(ctx, time.Now(), pollEvery, time.Minute, "native apply worker stopped", func() (bool, error) {
		var active bool
		err := benchkit.QueryRow(ctx, b.source, "SELECT active FROM pg_replication_slots WHERE slot_name = '"+nativeSlot+"'", &active)
		return !active, err
	})
	return m, err
}

// nativeCatchUp enables the subscription and times it until the marker is
// on its target.
func (b *bench) nativeCatchUp(ctx context.Context) (benchkit.Measurement, error) {
	m := benchkit.Measurement{Reader: "native logical replication: subscription enabled after the workload"}
	start := time.Now()
	if err := benchkit.ExecAll(ctx, b.dsn(targetNative), "ALTER SUBSCRIPTION "+nativeSlot+" ENABLE"); err != nil {
		return m, err
	}
	took, err := b.waitMarker(ctx, targetNative, start, "native catch-up", nil)
	if err != nil {
		return m, err
	}
	m.Seconds, m.OK = took.Seconds(), true
	b.nativeCPU = b.measureCatchUpCPU(ctx, targetNative, nativeSlot)
	// Disabled again: its walsender would compete with the other appliers
	// for the CPUs while they are measured.
	return m, benchkit.ExecAll(ctx, b.dsn(targetNative), "ALTER SUBSCRIPTION "+nativeSlot+" DISABLE")
}
