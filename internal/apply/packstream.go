package apply

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/pgflo/pgflo/internal/copypack"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// Snapshot rows go to the target's COPY in binary when every column's type
// has a conversion (internal/pgvalue): the packs carry the source's COPY
// text, which is read back into binary here, sparing the target's server
// process the text input functions that bound an initial sync. A value the
// conversion declines (a form it does not read) ends the binary COPY before
// its pack, and the table's snapshot rows go as text from then on.
//
// Packs of binary tuples (the replicator read the source with binary COPY)
// go to a binary COPY as they are when each column has the type the source's
// had (built-in types: the same OID, the same binary form), else their rows
// are rendered as COPY text (internal/pgvalue).

// rowsConversion rewrites the rows of a pack for the COPY they go to.
type rowsConversion interface {
	Append(dst, rows []byte) ([]byte, error)
}

// copyText renders binary tuples as COPY text rows.
type copyText struct{ *pgvalue.BinaryToText }

func (c copyText) Append(dst, rows []byte) ([]byte, error) { return c.AppendCopyText(dst, rows) }

// packCopy is how a run of packs goes to COPY: the rows' conversion (nil:
// as they are) and the COPY's format.
type packCopy struct {
	conv   rowsConversion
	binary bool
}

// format names the COPY's format and the rows' way there, for messages.
func (c packCopy) format() string {
	switch {
	case c.binary && c.conv == nil:
		return "binary, as they came"
	case c.binary:
		return "binary"
	case c.conv != nil:
		return "text, rendered from binary"
	}
	return "text"
}

// packStream reads the rows of a run of packs as one COPY stream: as the
// source wrote them, or converted to COPY's binary format when conv is set.
// next returns the run's next pack, nil at its end; it is called on COPY's
// goroutine. The caller reads taken and declined once COPY returns (under
// the lock: pgconn may still be reading).
type packStream struct {
	next    func() *Change
	how     packCopy
	cur     []byte
	buf     []byte
	started bool
	eof     bool

	mu       sync.Mutex
	run      []*Change // the packs written whole
	declined error     // why the pack after run could not be converted
}

func (r *packStream) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		if r.how.binary && !r.started {
			r.started = true
			r.cur = pgvalue.CopyBinaryHeader
			continue
		}
		ch := r.next()
		if ch != nil && r.how.conv != nil {
			var err error
			if r.buf, err = r.how.conv.Append(r.buf[:0], ch.Pack.Rows); err != nil {
				var ce *pgvalue.RowError
				if !errors.As(err, &ce) {
					// Binary rows that cannot be read: the pack is broken.
					return 0, fmt.Errorf("%w: snapshot rows of %s.%s: %v", copypack.ErrMalformed, ch.Schema, ch.Table, err)
				}
				r.mu.Lock()
				r.declined = err
				r.mu.Unlock()
				ch = nil
			}
		}
		if ch == nil {
			r.eof = true
			if r.how.binary {
				r.cur = pgvalue.CopyBinaryTrailer
			}
			continue
		}
		r.mu.Lock()
		r.run = append(r.run, ch)
		r.mu.Unlock()
		if r.how.conv != nil {
			r.cur = r.buf
		} else {
			r.cur = ch.Pack.Rows
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// taken returns the packs written whole so far, and why the stream ended
// before the next one when a conversion declined it.
func (r *packStream) taken() ([]*Change, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.run, r.declined
}

// batchPacks returns the packs of the batch from index from on while same
// accepts them.
func batchPacks(batch *Batch, from int, same func(*Change) bool) func() *Change {
	next := from
	return func() *Change {
		ch := batch.wait(next)
		if !same(ch) {
			return nil
		}
		next++
		return ch
	}
}

// slicePacks returns packs one by one.
func slicePacks(packs []*Change) func() *Change {
	return func() *Change {
		if len(packs) == 0 {
			return nil
		}
		ch := packs[0]
		packs = packs[1:]
		return ch
	}
}

// packCopyOf returns how the rows of pack p (and the packs like it after it)
// go to COPY into columns cols of t.
func (a *Applier) packCopyOf(t *Table, cols []int, p *copypack.Pack) packCopy {
	if !p.Binary {
		if conv := a.binaryRows(t, cols); conv != nil {
			return packCopy{conv: conv, binary: true}
		}
		return packCopy{}
	}
	if !a.cfg.TextCopy && sameTypes(t, cols, p) {
		return packCopy{binary: true}
	}
	return packCopy{conv: copyText{p.TextRenderer()}}
}

// sameTypes reports whether each column of a binary pack goes to a target
// column of the same built-in type, which reads the source's binary form
// as it is.
func sameTypes(t *Table, cols []int, p *copypack.Pack) bool {
	for j, c := range p.Columns {
		if oid := t.Columns[cols[j]].TypeOID; oid != c.OID || oid >= pgvalue.FirstNormalOID {
			return false
		}
	}
	return true
}

// binaryRows returns the binary conversion of snapshot text rows into
// columns cols of t, nil when they go to COPY as text (TextCopy, a
// column type without conversion, a value declined before).
func (a *Applier) binaryRows(t *Table, cols []int) *pgvalue.TextToBinary {
	if a.cfg.TextCopy || t.textCopy {
		return nil
	}
	k := shapeKey("", cols)
	if r, ok := t.binary[k]; ok {
		return r
	}
	oids := make([]uint32, len(cols))
	for j, c := range cols {
		oids[j] = t.Columns[c].TypeOID
	}
	r, bad, ok := pgvalue.TextToBinaryFor(oids)
	if !ok {
		a.log.Debugf("Snapshot rows of %s go to COPY as text: column %s has a type (OID %d) without binary conversion", t.Name, t.Columns[cols[bad]].ident, oids[bad])
	}
	if t.binary == nil {
		t.binary = map[string]*pgvalue.TextToBinary{}
	}
	t.binary[k] = r
	return r
}

// declinedBinary records that a snapshot row of t could not be converted to
// binary: t's snapshot rows go to COPY as text from now on. The message
// names the column, never the value.
func (a *Applier) declinedBinary(t *Table, cols []int, err error) {
	t.textCopy = true
	where := err.Error()
	var ce *pgvalue.RowError
	if errors.As(err, &ce) && ce.Column < len(cols) {
		where = fmt.Sprintf("column %s: %v", t.Columns[cols[ce.Column]].ident, ce.Err)
	}
	a.log.Infof("Snapshot rows of %s go to COPY as text from now on: a value could not be converted to COPY's binary format (%s)", t.Name, where)
}
