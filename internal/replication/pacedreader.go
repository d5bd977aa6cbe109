package replication

import (
	"bufio"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// A replication connection reads through a pacedReader and a large buffer.
// While a backlog streams, the walsender writes every change as soon as it is
// decoded; a reader that keeps up reads them one system call (and one
// goroutine wake-up) at a time, which cost the replicator a quarter of its CPU.
// After a small read that came soon after the previous one, the next read
// waits until readPause has passed since it: a busy stream is then read in
// a few large gulps, at most readPause later. A quiet stream is not delayed.
//
// While it waits, nothing waits on the socket, yet the kernel would still
// signal Go's network poller for every segment the walsender sends: a thread
// woke, found nothing to run and slept again every ten microseconds, a third
// of the replicator's CPU. So during the pause the socket's receive low-water
// mark (SO_RCVLOWAT) is raised, which holds those signals back until that
// much is queued, and it is lowered to one byte again before the next read,
// which can then block as usual.
//
// A stream that keeps up with its source reads every change soon after it
// was committed; pausing there would only delay it. So the stream turns
// pacing off (caughtUp) while the transactions it reads are younger than
// caughtUpLag when the server sends them, and on again when they are older:
// a backlog.
const (
	readPause     = 4 * time.Millisecond
	readSmall     = 32 << 10
	readBufferLen = 256 << 10
	caughtUpLag   = 20 * time.Millisecond
)

type pacedReader struct {
	r io.Reader
	// last is when the previous read returned; small that it returned
	// little, soon after the one before.
	last  time.Time
	small bool
	// lowat sets the socket's receive low-water mark; nil when the
	// connection has none (or setting it failed once). raised: it is above
	// one byte.
	lowat  func(bytes int) error
	raised bool
	// caughtUp turns pacing off; set by the stream reading through it, on
	// the goroutine that reads.
	caughtUp bool
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.small && !p.caughtUp {
		if wait := readPause - time.Since(p.last); wait > 0 {
			p.setLowat(readSmall)
			time.Sleep(wait)
		}
	}
	if p.raised {
		p.setLowat(1)
	}
	n, err := p.r.Read(b)
	now := time.Now()
	p.small = n > 0 && n < readSmall && now.Sub(p.last) < 2*readPause
	p.last = now
	return n, err
}

func (p *pacedReader) setLowat(bytes int) {
	if p.lowat == nil {
		return
	}
	if err := p.lowat(bytes); err != nil {
		// Pace without it. (Had lowering failed, a read would wait for the
		// mark or the stream's read deadline: late, never stuck.)
		p.lowat, p.raised = nil, false
		return
	}
	p.raised = bytes > 1
}

// pacedFrontend builds a connection's frontend over a pacedReader, which it
// also returns. w is the connection (pgconn hands its net.Conn, TLS or not,
// as the writer).
func pacedFrontend(r io.Reader, w io.Writer) (*pgproto3.Frontend, *pacedReader) {
	tuneReceiveBuffer(w) // rcvbuf.go
	p := &pacedReader{r: r, lowat: socketLowat(w)}
	return pgproto3.NewFrontend(bufio.NewReaderSize(p, readBufferLen), w), p
}

// pacedReaderKey keys a replication connection's pacedReader in its
// CustomData, where the stream finds it.
const pacedReaderKey = "pgflo.pacedReader"

// pacedReaderOf returns conn's pacedReader, or nil.
func pacedReaderOf(conn *pgconn.PgConn) *pacedReader {
	p, _ := conn.CustomData()[pacedReaderKey].(*pacedReader)
	return p
}
