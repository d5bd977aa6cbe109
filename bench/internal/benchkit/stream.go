package benchkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
)

// StreamWatch looks at a group's JetStream stream from the outside.
type StreamWatch struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	name    string
	stream  jetstream.Stream
	lastSeq uint64 // the last message looked at by Holds
}

// NewStreamWatch connects to NATS at url to watch group's stream.
func NewStreamWatch(url, group string) (*StreamWatch, error) {
	nc, err := nats.Connect(url, nats.Name("pgflo-bench"))
	if err != nil {
		return nil, fmt.Errorf("connect to NATS %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &StreamWatch{nc: nc, js: js, name: jsproto.StreamName(group)}, nil
}

// Close closes the NATS connection.
func (w *StreamWatch) Close() { w.nc.Close() }

// JetStream is the watch's JetStream context, for other looks (KV buckets).
func (w *StreamWatch) JetStream() jetstream.JetStream { return w.js }

// WaitCreated waits until the stream exists (rep, the replicator, creates
// it), polling every 10ms.
func (w *StreamWatch) WaitCreated(ctx context.Context, rep *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, err := w.js.Stream(reqCtx, w.name)
		cancel()
		switch {
		case err == nil:
			w.stream = s
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && time.Now().Before(deadline):
			// In a cluster, a stream being created answers nothing until
			// its replicas have elected a leader.
		case !errors.Is(err, jetstream.ErrStreamNotFound):
			return fmt.Errorf("look up stream %s: %w", w.name, err)
		case rep.Exited():
			return fmt.Errorf("replicator exited (%v) before creating stream %s", rep.Err(), w.name)
		case time.Now().After(deadline):
			return fmt.Errorf("the replicator did not create stream %s within %v", w.name, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Holds reports whether the stream's last message holds the change at lsn,
// the workload's last: the replicator publishes in WAL order on one
// connection, so the stream then holds every change.
func (w *StreamWatch) Holds(ctx context.Context, lsn string) (bool, error) {
	reqCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := w.stream.Info(reqCtx)
	if err != nil {
		return false, fmt.Errorf("stream %s info: %w", w.name, err)
	}
	seq := info.State.LastSeq
	if seq == 0 || seq == w.lastSeq {
		return false, nil
	}
	w.lastSeq = seq
	msg, err := w.stream.GetMsg(reqCtx, seq)
	if err != nil {
		return false, fmt.Errorf("stream %s message %d: %w", w.name, seq, err)
	}
	events, err := jsproto.Unpack(msg.Data, msg.Header)
	if err != nil {
		return false, fmt.Errorf("stream %s message %d: %w", w.name, seq, err)
	}
	for _, ev := range events {
		if bytes.Contains(ev, []byte(`"lsn":"`+lsn+`"`)) {
			return true, nil
		}
	}
	return false, nil
}
