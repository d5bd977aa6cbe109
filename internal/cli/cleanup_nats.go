package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
)

// natsTargets inspects the NATS server: the group's durable consumer, its
// stream and its state bucket.
func natsTargets(ctx context.Context, o CleanupOptions) (place, error) {
	var conn jsproto.ConnConfig
	if o.NATSAuth != nil {
		conn = *o.NATSAuth
	}
	conn.URL, conn.Name = o.NATSURL, "pgflo cleanup"
	nc, err := jsproto.Connect(conn)
	if err != nil {
		return place{}, err
	}
	p := place{name: "NATS " + jsproto.RedactURL(nc.ConnectedUrl()), close: nc.Close}
	js, err := jetstream.New(nc)
	if err != nil {
		p.close()
		return place{}, fmt.Errorf("open JetStream: %w", err)
	}

	consumer := target{what: fmt.Sprintf("JetStream consumer %s of stream %s", o.Consumer, o.Stream)}
	c, err := js.Consumer(ctx, o.Stream, o.Consumer)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		p.close()
		return place{}, fmt.Errorf("look up consumer %q: %w", o.Consumer, err)
	default:
		info := c.CachedInfo()
		consumer.exists = true
		consumer.detail = fmt.Sprintf("%s to deliver, %d awaiting acknowledgement", plural(int(info.NumPending), "message"), info.NumAckPending)
	}
	consumer.drop = func(ctx context.Context) (string, error) {
		return "", ignoreNotFound(js.DeleteConsumer(ctx, o.Stream, o.Consumer))
	}

	stream := target{what: "JetStream stream " + o.Stream}
	s, err := js.Stream(ctx, o.Stream)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		p.close()
		return place{}, fmt.Errorf("look up stream %q: %w", o.Stream, err)
	default:
		state := s.CachedInfo().State
		stream.exists = true
		stream.detail = fmt.Sprintf("%s, %s", plural(int(state.Msgs), "message"), byteSize(int64(state.Bytes)))
	}
	stream.drop = func(ctx context.Context) (string, error) {
		return "", ignoreNotFound(js.DeleteStream(ctx, o.Stream))
	}

	bucket := target{what: "JetStream key-value bucket " + o.Bucket}
	kv, err := js.KeyValue(ctx, o.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
	case err != nil:
		p.close()
		return place{}, fmt.Errorf("look up key-value bucket %q: %w", o.Bucket, err)
	default:
		bucket.exists = true
		if status, err := kv.Status(ctx); err == nil {
			bucket.detail = plural(int(status.Values()), "value")
		}
	}
	bucket.drop = func(ctx context.Context) (string, error) {
		return "", ignoreNotFound(js.DeleteKeyValue(ctx, o.Bucket))
	}

	p.targets = []target{consumer, stream, bucket}
	return p, nil
}

// ignoreNotFound treats an object that vanished before its drop as dropped.
func ignoreNotFound(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	return err
}
