package main

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/event"
)

// outputCounter follows the worker's output file (one change event per line)
// and counts the distinct snapshot rows of the table by primary key (ids 1..N),
// so that a row delivered twice (at-least-once) does not end the measurement
// early. The table is not written during the run, so every line must be a
// snapshot INSERT of it; anything else is counted as bad.
type outputCounter struct {
	*benchkit.FileLines
	table string
	rows  int // ids run from 1 to rows

	lines    int      // complete lines read
	snapshot int      // snapshot INSERTs of table
	seen     []uint64 // bitmap of their ids
	distinct int      // distinct ids in seen
	bad      int      // lines that are not snapshot INSERTs of table with an id in 1..N
	badLine  string   // the first of them, for the report
}

func newOutputCounter(path, table string, rows int) *outputCounter {
	return &outputCounter{FileLines: benchkit.NewFileLines(path, 4<<20), table: table, rows: rows, seen: make([]uint64, rows/64+1)}
}

// duplicates is how many snapshot rows were seen more than once.
func (c *outputCounter) duplicates() int { return c.snapshot - c.distinct }

// poll reads what was appended to the file since the last poll.
func (c *outputCounter) poll() error { return c.Poll(c.line) }

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
		c.badLine = benchkit.Clip(line, 300)
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
