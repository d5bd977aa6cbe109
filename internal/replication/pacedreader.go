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
const (
	readPause     = time.Millisecond
	readSmall     = 32 << 10
	readBufferLen = 256 << 10
)

type pacedReader struct {
	r io.Reader
	// last is when the previous read returned; small that it returned
	// little, soon after the one before.
	last  time.Time
	small bool
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.small {
		if wait := readPause - time.Since(p.last); wait > 0 {
			time.Sleep(wait)
		}
	}
	n, err := p.r.Read(b)
	now := time.Now()
	p.small = n > 0 && n < readSmall && now.Sub(p.last) < 2*readPause
	p.last = now
	return n, err
}

// pacedFrontend builds a connection's frontend over a pacedReader.
func pacedFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	return pgproto3.NewFrontend(bufio.NewReaderSize(&pacedReader{r: r}, readBufferLen), w)
}

var _ pgconn.BuildFrontendFunc = pacedFrontend
