package consumer

import (
	"errors"
	"testing"
)

// The loss error names the stream, the consumer, the missing stream
// sequences, the changes around the hole when known, and the recovery.
func TestLossErrorText(t *testing.T) {
	for _, tc := range []struct {
		name string
		loss LossError
		want string
	}{
		{
			name: "range with ids",
			loss: LossError{Stream: "pgflo_g_stream", Durable: "pgflo_g_consumer", Group: "g", Cause: "removed",
				First: 11, Last: 40, AfterID: "0/16B37A0:3", ResumeID: "0/17000A0:0-1023"},
			want: "stream pgflo_g_stream: consumer pgflo_g_consumer missed stream sequences 11 to 40 (removed); " +
				"the last change delivered was message 0/16B37A0:3 (transaction 0/16B37A0); " +
				"the stream goes on with message 0/17000A0:0-1023 (transaction 0/17000A0): " +
				"the stream lost changes this worker never delivered, so the worker stops before the hole; " +
				"resync the group (pgflo resync --group g --force --yes, then restart this worker) to copy its tables afresh",
		},
		{
			name: "one sequence, no ids",
			loss: LossError{Stream: "s", Durable: "d", Group: "g", Cause: "purged", First: 7, Last: 7},
			want: "stream s: consumer d missed stream sequence 7 (purged): the stream lost changes this worker never delivered, " +
				"so the worker stops before the hole; resync the group (pgflo resync --group g --force --yes, then restart this worker) to copy its tables afresh",
		},
		{
			name: "open end",
			loss: LossError{Stream: "s", Durable: "d", Group: "g", Cause: "recreated", First: 5, AfterID: "plain"},
			want: "stream s: consumer d missed the messages from stream sequence 5 on (recreated); the last change delivered was message plain: " +
				"the stream lost changes this worker never delivered, so the worker stops before the hole; resync the group (pgflo resync --group g --force --yes, then restart this worker) to copy its tables afresh",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := error(&tc.loss)
			if got := err.Error(); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			if !errors.Is(err, ErrStreamLoss) {
				t.Fatal("not ErrStreamLoss")
			}
		})
	}
}

// Position keys are valid key-value keys for every durable name a consumer
// can have: names with other characters are spelled in hex.
func TestPositionKey(t *testing.T) {
	for durable, want := range map[string]string{
		"pgflo_g_consumer":    "consumers.pgflo_g_consumer",
		"pgflo_g_consumer_p1": "consumers.pgflo_g_consumer_p1",
		"a-b=c":               "consumers.a-b=c",
		"grüße":               "consumers.hex.6772c3bcc39f65",
	} {
		if got := PositionKey(durable); got != want {
			t.Errorf("PositionKey(%q) = %q, want %q", durable, got, want)
		}
	}
}

// A consumer filters when it takes only some of the stream's subjects.
func TestFiltering(t *testing.T) {
	stream := []string{"pgflo.g.>"}
	for _, tc := range []struct {
		filters []string
		want    bool
	}{
		{nil, false},
		{[]string{"pgflo.g.>"}, false},
		{[]string{"pgflo.g.*.*.1"}, true},
		{[]string{"pgflo.g.public.users", "pgflo.g.public.orders"}, true},
	} {
		if got := filtering(tc.filters, stream); got != tc.want {
			t.Errorf("filtering(%v, %v) = %v, want %v", tc.filters, stream, got, tc.want)
		}
	}
	if !filtering([]string{"a.>"}, []string{"a.>", "b.>"}) {
		t.Error("one of two stream subjects is filtering")
	}
}
