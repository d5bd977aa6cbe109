package cli

import (
	"context"
	"reflect"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

// In a partitioned group every partition's consumer is found (and dropped).
func TestCleanupFindsPartitionConsumers(t *testing.T) {
	ns := testenv.StartNATS(t)
	js := ns.JetStream(t)
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: jsproto.StreamName("g"), Subjects: []string{jsproto.GroupSubjects("g")},
		Metadata: map[string]string{jsproto.StreamMetaPartitions: "2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: jsproto.PartitionConsumerName("g", 1), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	o := CleanupOptions{Group: "g", NATSURL: ns.URL(), Stream: jsproto.StreamName("g"), Consumer: jsproto.ConsumerName("g"), Bucket: jsproto.StateBucket("g")}
	p, err := natsTargets(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	var found []string
	for _, tg := range p.targets {
		if tg.exists {
			found = append(found, tg.what)
		}
	}
	want := []string{"JetStream consumer pgflo_g_consumer_p1 of stream pgflo_g_stream", "JetStream stream pgflo_g_stream"}
	if !reflect.DeepEqual(found, want) {
		t.Fatalf("found %q, want %q", found, want)
	}
	if len(p.targets) != 6 { // the group's consumer, two partitions', stream, dead-letter stream, bucket
		t.Fatalf("%d targets", len(p.targets))
	}
}
