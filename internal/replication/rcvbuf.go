package replication

import "time"

// A walsender sends each change with a system call of its own whenever the
// socket has room, and on loopback each such send also runs the receiving
// socket's path. A reader that keeps up (the JetStream pipeline takes
// everything at once) always leaves room: during a backlog of 200,000
// changes the walsender spent 1.1 s of CPU where native's subscriber, whose
// apply worker falls behind, cost it 0.6 s. With a small receive buffer the
// window closes while the paced reader pauses; the walsender's sends then
// only append to the segment queued on its side, which goes out whole when
// the window opens: its CPU falls to native's, and the replicator reads
// fewer, larger chunks (0.94 s → 0.53 s of CPU).
//
// It costs no throughput where it is used: the reader pauses only after a
// small read, and while the sender is ahead every read takes a full window.
// But a window caps throughput at its size per round trip, so it is set
// only for a server within receiveBufferMaxRTT (the same host or a LAN);
// farther away the kernel sizes the buffer as usual. Linux doubles the
// value set, and the result must stay above twice loopback's 64 KiB
// segment: below a segment the receiver advertises a zero window and the
// sender waits for probes (an 8 KiB buffer stalled the stream).
const (
	receiveBufferSize   = 64 << 10
	receiveBufferMaxRTT = 500 * time.Microsecond
)

// receiveBufferFor returns the receive buffer to set for a replication
// connection with round-trip time rtt, and false when the kernel's sizing
// should stay.
func receiveBufferFor(rtt time.Duration) (int, bool) {
	if rtt <= 0 || rtt > receiveBufferMaxRTT {
		return 0, false
	}
	return receiveBufferSize, true
}
