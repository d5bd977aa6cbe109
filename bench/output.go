package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/pgflo/pgflo/internal/event"
)

// outputCounter follows the worker's output file (one change event per line)
// and counts the distinct UPDATE events of table t by LSN, so that an event
// delivered twice (at-least-once) does not end the measurement early.
type outputCounter struct {
	path    string
	table   string
	off     int64
	partial []byte // an incomplete last line, completed by the next read
	buf     []byte

	lines   int                 // complete lines read
	updates int                 // UPDATE events of table
	lsns    map[string]struct{} // their distinct LSNs
	other   int                 // valid events of other ops or tables
	bad     int                 // lines that are not change events
	badLine string              // the first of them, for the report
}

func newOutputCounter(path, table string) *outputCounter {
	return &outputCounter{path: path, table: table, buf: make([]byte, 1<<20), lsns: make(map[string]struct{})}
}

// distinct is the number of distinct UPDATE events of the table seen so far.
func (c *outputCounter) distinct() int { return len(c.lsns) }

// duplicates is how many UPDATE events were seen more than once.
func (c *outputCounter) duplicates() int { return c.updates - len(c.lsns) }

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

func (c *outputCounter) line(line []byte) {
	c.lines++
	h, err := event.Peek(line)
	switch {
	case err != nil:
		c.bad++
		if c.badLine == "" {
			c.badLine = string(line)
			if len(c.badLine) > 300 {
				c.badLine = c.badLine[:300] + "…"
			}
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
