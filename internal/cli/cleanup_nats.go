package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/bytesize"
	"github.com/pgflo/pgflo/internal/jsproto"
)

// natsTargets inspects the NATS server: the group's durable consumers (one
// per partition in a partitioned group), its stream and its state bucket.
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
		stream.detail = fmt.Sprintf("%s, %s", plural(int(state.Msgs), "message"), bytesize.Format(int64(state.Bytes)))
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

	// The workers' consumers: the group's, and in a partitioned group (the
	// stream records its partitions) one per partition.
	names := []string{o.Consumer}
	if stream.exists && o.Consumer == jsproto.ConsumerName(o.Group) {
		if n, err := jsproto.StreamPartitions(s.CachedInfo().Config.Metadata); err == nil {
			for k := 0; k < n && n > 1; k++ {
				names = append(names, jsproto.PartitionConsumerName(o.Group, k))
			}
		}
	}
	for _, name := range names {
		consumer, err := consumerTarget(ctx, js, o.Stream, name)
		if err != nil {
			p.close()
			return place{}, err
		}
		p.targets = append(p.targets, consumer)
	}
	dead, err := deadLetterTarget(ctx, js, o.Group)
	if err != nil {
		p.close()
		return place{}, err
	}
	p.targets = append(p.targets, stream, dead, bucket)
	return p, nil
}

// consumerTarget is the durable consumer name of stream.
func consumerTarget(ctx context.Context, js jetstream.JetStream, stream, name string) (target, error) {
	consumer := target{what: fmt.Sprintf("JetStream consumer %s of stream %s", name, stream)}
	c, err := js.Consumer(ctx, stream, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrConsumerNotFound):
	case err != nil:
		return target{}, fmt.Errorf("look up consumer %q: %w", name, err)
	default:
		info := c.CachedInfo()
		consumer.exists = true
		consumer.detail = fmt.Sprintf("%s to deliver, %d awaiting acknowledgement", plural(int(info.NumPending), "message"), info.NumAckPending)
	}
	consumer.drop = func(ctx context.Context) (string, error) {
		return "", ignoreNotFound(js.DeleteConsumer(ctx, stream, name))
	}
	return consumer, nil
}

// ignoreNotFound treats an object that vanished before its drop as dropped.
func ignoreNotFound(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	return err
}
