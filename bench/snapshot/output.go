package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/pgflo/pgflo/internal/event"
)

// outputCounter follows the worker's output file (one change event per line)
// and counts the distinct snapshot rows of the table by primary key (ids 1..N),
// so that a row delivered twice (at-least-once) does not end the measurement
// early. The table is not written during the run, so every line must be a
// snapshot INSERT of it; anything else is counted as bad.
type outputCounter struct {
	path    string
	table   string
	rows    int // ids run from 1 to rows
	off     int64
	partial []byte // an incomplete last line, completed by the next read
	buf     []byte

	lines    int      // complete lines read
	snapshot int      // snapshot INSERTs of table
	seen     []uint64 // bitmap of their ids
	distinct int      // distinct ids in seen
	bad      int      // lines that are not snapshot INSERTs of table with an id in 1..N
	badLine  string   // the first of them, for the report
}

func newOutputCounter(path, table string, rows int) *outputCounter {
	return &outputCounter{path: path, table: table, rows: rows, buf: make([]byte, 4<<20), seen: make([]uint64, rows/64+1)}
}

// duplicates is how many snapshot rows were seen more than once.
func (c *outputCounter) duplicates() int { return c.snapshot - c.distinct }

// poll reads what was appended to the file since the last poll. A file that
// does not exist yet is empty.
func (c *outputCounter) poll() error {
	f, err := os.Open(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read worker output: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(c.off, io.SeekStart); err != nil {
		return fmt.Errorf("read worker output: %w", err)
	}
	for {
		n, err := f.Read(c.buf)
		if n > 0 {
			c.off += int64(n)
			c.consume(c.buf[:n])
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read worker output: %w", err)
		}
	}
}

func (c *outputCounter) consume(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			c.partial = append(c.partial, data...)
			return
		}
		line := data[:i]
		if len(c.partial) > 0 {
			line = append(c.partial, line...)
			c.partial = c.partial[:0]
		}
		c.line(line)
		data = data[i+1:]
	}
}

var (
	snapshotTrue = []byte(`,"snapshot":true,`)
	newID        = []byte(`"new":{"id":"`)
)

func (c *outputCounter) line(line []byte) {
	c.lines++
	h, err := event.Peek(line)
	if err != nil || h.Op != event.Insert || h.Table != c.table || !bytes.Contains(line, snapshotTrue) {
		c.badLineSeen(line)
		return
	}
	// pgflo writes a row's members in column order and every value as a
	// string: the id is the first member of "new".
	i := bytes.Index(line, newID)
	if i < 0 {
		c.badLineSeen(line)
		return
	}
	rest := line[i+len(newID):]
	j := bytes.IndexByte(rest, '"')
	id, err := strconv.ParseUint(string(rest[:max(j, 0)]), 10, 64)
	if j < 0 || err != nil || id < 1 || id > uint64(c.rows) {
		c.badLineSeen(line)
		return
	}
	c.snapshot++
	w, bit := id/64, uint64(1)<<(id%64)
	if c.seen[w]&bit == 0 {
		c.seen[w] |= bit
		c.distinct++
	}
}

func (c *outputCounter) badLineSeen(line []byte) {
	c.bad++
	if c.badLine == "" {
		c.badLine = string(line)
		if len(c.badLine) > 300 {
			c.badLine = c.badLine[:300] + "…"
		}
	}
}

// summary describes what was read, for progress and error messages.
func (c *outputCounter) summary() string {
	s := fmt.Sprintf("%d lines: %d distinct snapshot rows of %s", c.lines, c.distinct, c.table)
	if d := c.duplicates(); d > 0 {
		s += fmt.Sprintf(", %d duplicates", d)
	}
	if c.bad > 0 {
		s += fmt.Sprintf(", %d lines that are not snapshot rows of %s (first: %s)", c.bad, c.table, c.badLine)
	}
	return s
}
