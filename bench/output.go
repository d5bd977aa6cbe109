package main

import (
	"fmt"

	"github.com/pgflo/pgflo/bench/internal/benchkit"
	"github.com/pgflo/pgflo/internal/event"
)

// outputCounter follows the worker's output file (one change event per line)
// and counts the distinct UPDATE events of table t by LSN, so that an event
// delivered twice (at-least-once) does not end the measurement early.
type outputCounter struct {
	*benchkit.FileLines
	table string

	lines   int                 // complete lines read
	updates int                 // UPDATE events of table
	lsns    map[string]struct{} // their distinct LSNs
	other   int                 // valid events of other ops or tables
	bad     int                 // lines that are not change events
	badLine string              // the first of them, for the report
}

func newOutputCounter(path, table string) *outputCounter {
	return &outputCounter{FileLines: benchkit.NewFileLines(path, 1<<20), table: table, lsns: make(map[string]struct{})}
}

// distinct is the number of distinct UPDATE events of the table seen so far.
func (c *outputCounter) distinct() int { return len(c.lsns) }

// duplicates is how many UPDATE events were seen more than once.
func (c *outputCounter) duplicates() int { return c.updates - len(c.lsns) }

// poll reads what was appended to the file since the last poll.
func (c *outputCounter) poll() error { return c.Poll(c.line) }

func (c *outputCounter) line(line []byte) {
	c.lines++
	h, err := event.Peek(line)
	switch {
	case err != nil:
		c.bad++
		if c.badLine == "" {
			c.badLine = benchkit.Clip(line, 300)
		}
	case h.Op == event.Update && h.Table == c.table:
		c.updates++
		c.lsns[h.LSN] = struct{}{}
	default:
		c.other++
	}
}

// summary describes what was read, for progress and error messages.
func (c *outputCounter) summary() string {
	s := fmt.Sprintf("%d lines: %d distinct UPDATEs of %s", c.lines, c.distinct(), c.table)
	if d := c.duplicates(); d > 0 {
		s += fmt.Sprintf(", %d duplicates", d)
	}
	if c.other > 0 {
		s += fmt.Sprintf(", %d other events", c.other)
	}
	if c.bad > 0 {
		s += fmt.Sprintf(", %d lines that are not change events (first: %s)", c.bad, c.badLine)
	}
	return s
}
