package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/state"
)

// completeGrace is how long the benchmark waits, after the output holds
// every row, for the KV record to say the snapshot is complete.
const completeGrace = 60 * time.Second

// pgfloResult holds what the pgflo run measured.
type pgfloResult struct {
	endToEnd, complete         benchkit.Measurement
	repRSS, workerRSS, natsRSS int64   // bytes, 0 when unknown
	repCPU, workerCPU, natsCPU float64 // seconds of user+system CPU, -1 when unknown
	lines, duplicates          int
	outputBytes                int64
	chunks                     int    // chunks in the snapshot plan
	natsSetup                  string // the NATS pgflo ran against
}

// measurePgflo runs `pgflo nats`, the replicator (copy_and_stream) and the
// worker as separate processes, and times from the replicator's start until
// the worker's output file holds every row of the table. On the side it
// notes when the group's KV record first says the snapshot is complete
// (every chunk acknowledged by the replicator's output: JetStream holds it).
func measurePgflo(ctx context.Context, o options, work, mode, dsn string) (res pgfloResult, err error) {
	res.endToEnd = benchkit.Measurement{Reader: "pgflo copy_and_stream: replicator→JetStream→worker→file (every row in the file)"}
	res.complete = benchkit.Measurement{Reader: "pgflo replicator: KV snapshot record complete (every chunk acked by JetStream)"}
	res.repCPU, res.workerCPU, res.natsCPU = -1, -1, -1
	var procs benchkit.Procs // stopped in reverse order
	defer func() { procs.StopAll(err == nil) }()

	natsSetup, watch, err := procs.StartNATSMode(ctx, work, o.bin, mode, group)
	if err != nil {
		return res, err
	}
	defer watch.Close()
	natsURL := natsSetup.URL
	res.natsSetup = natsSetup.Describe()
	kv := &kvWatch{js: watch.JetStream(), bucket: jsproto.StateBucket(group)}

	repCfg := filepath.Join(work, "rep.yaml")
	// The replicator logs at INFO: its per-table snapshot progress lands in
	// its log (shown on failure, kept with --keep).
	if err := os.WriteFile(repCfg, []byte(benchkit.QuietProcess+fmt.Sprintf(`input:
  pg_flo_replicator:
    dsn: %q
    group: %s
    tables: [%s]
    mode: copy_and_stream
    nats:
      url: %q
%soutput:
  pg_flo_jetstream:
    url: %q
    group: %s
%s`, dsn, group, table, natsURL, natsSetup.ReplicaFields("    ", "state_replicas"), natsURL, group, natsSetup.ReplicaFields("    ", "stream_replicas"))), 0o600); err != nil {
		return res, err
	}
	workerCfg, output, err := benchkit.WriteFileWorker(work, natsURL, group)
	if err != nil {
		return res, err
	}

	rep, worker, err := procs.StartPipeline(ctx, work, o.bin, repCfg, workerCfg, watch)
	if err != nil {
		return res, err
	}
	t0 := rep.Started
	benchkit.Say("    the stream existed after %.3fs; worker started", time.Since(t0).Seconds())

	counter := newOutputCounter(output, table, o.rows)
	var kvGiveUp time.Time
	err = procs.Wait(ctx, t0, o.timeout, pollEvery, fmt.Sprintf("deliver all %d rows", o.rows), func() (bool, error) {
		if err := counter.poll(); err != nil {
			return false, err
		}
		if !res.endToEnd.OK && counter.distinct >= o.rows {
			res.endToEnd.Seconds, res.endToEnd.OK = time.Since(t0).Seconds(), true
			kvGiveUp = time.Now().Add(completeGrace)
		}
		if !res.complete.OK {
			snap, err := kv.load(ctx)
			if err != nil {
				return false, procs.Describe(err)
			}
			if snap != nil {
				res.chunks = chunkCount(snap)
				if snap.Complete {
					res.complete.Seconds, res.complete.OK = time.Since(t0).Seconds(), true
				}
			}
		}
		return res.endToEnd.OK && (res.complete.OK || time.Now().After(kvGiveUp)), nil
	}, func() string {
		return fmt.Sprintf("%s; KV record complete: %v (%s)", counter.summary(), res.complete.OK, kv.summary())
	})
	if err != nil {
		return res, err
	}
	if !res.complete.OK {
		res.complete.Note = fmt.Sprintf("the KV record did not say complete within %v after the output held every row (%s)", completeGrace, kv.summary())
		benchkit.Warn("%s", res.complete.Note)
	}
	// A moment for stragglers (duplicates) before counting what arrived.
	time.Sleep(200 * time.Millisecond)
	if err := counter.poll(); err != nil {
		return res, err
	}
	res.lines, res.duplicates, res.outputBytes = counter.lines, counter.duplicates(), counter.Offset()
	benchkit.Say("    %.3fs end to end (KV record complete after %s); output: %s",
		res.endToEnd.Seconds, secondsOrDash(res.complete), counter.summary())
	if counter.bad > 0 {
		return res, procs.Describe(fmt.Errorf("the output has %d lines that are not snapshot rows of %s (first: %s)", counter.bad, table, counter.badLine))
	}

	res.repRSS, _ = rep.MaxRSS()
	res.workerRSS, _ = worker.MaxRSS()
	res.natsRSS = natsSetup.MaxRSS()
	res.repCPU, res.workerCPU, res.natsCPU = rep.CPU(), worker.CPU(), natsSetup.CPU()
	return res, nil
}

func secondsOrDash(m benchkit.Measurement) string {
	if !m.OK {
		return "–"
	}
	return fmt.Sprintf("%.3fs", m.Seconds)
}

func chunkCount(s *state.Snapshot) int {
	n := 0
	for _, t := range s.Tables {
		n += len(t.Chunks)
	}
	return n
}

// kvWatch reads the group's snapshot record from the outside, without
// creating the bucket (the replicator does).
type kvWatch struct {
	js     jetstream.JetStream
	bucket string
	kv     jetstream.KeyValue
	last   *state.Snapshot
}

// load returns the snapshot record, nil while the bucket or key is missing.
func (w *kvWatch) load(ctx context.Context) (*state.Snapshot, error) {
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if w.kv == nil {
		kv, err := w.js.KeyValue(reqCtx, w.bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) || electing(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("open KV bucket %s: %w", w.bucket, err)
		}
		w.kv = kv
	}
	entry, err := w.kv.Get(reqCtx, state.SnapshotKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) || electing(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read KV %s key %s: %w", w.bucket, state.SnapshotKey, err)
	}
	var snap state.Snapshot
	if err := json.Unmarshal(entry.Value(), &snap); err != nil {
		return nil, fmt.Errorf("decode KV %s key %s: %w", w.bucket, state.SnapshotKey, err)
	}
	w.last = &snap
	return &snap, nil
}

// electing reports an error of a replicated bucket that answers nothing
// while its replicas elect a leader (just created, or a server busy): it is
// read again next poll.
func electing(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded)
}

// summary describes the last record read.
func (w *kvWatch) summary() string {
	if w.last == nil {
		return "no snapshot record yet"
	}
	total := chunkCount(w.last)
	return fmt.Sprintf("%d/%d chunks done, complete=%v", total-w.last.Remaining(), total, w.last.Complete)
}
