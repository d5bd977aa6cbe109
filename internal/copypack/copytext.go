package copypack

import (
	"bytes"
	"fmt"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// ParseLine splits one line of COPY's text format into values: fields
// separated by tabs, \N for NULL, backslash escapes for the rest. The values
// are then exactly the type output functions' text, as pgoutput sends it.
func ParseLine(line []byte, columns []event.Column, row event.Row) (event.Row, error) {
	row = row[:0]
	for i := range columns {
		end := bytes.IndexByte(line, '\t')
		last := end < 0
		if last {
			end = len(line)
		}
		if last != (i == len(columns)-1) {
			return nil, fmt.Errorf("COPY row has a different number of fields than the %d columns", len(columns))
		}
		field := line[:end]
		v := event.Value{Name: columns[i].Name}
		if len(field) == 2 && field[0] == '\\' && field[1] == 'N' {
			v.Null = true
		} else {
			text, err := unescape(field)
			if err != nil {
				return nil, fmt.Errorf("column %s: %w", columns[i].Name, err)
			}
			v.Text = text
		}
		row = append(row, v)
		if !last {
			line = line[end+1:]
		}
	}
	return row, nil
}

// unescape decodes COPY text escapes into a new string.
func unescape(field []byte) (string, error) {
	if bytes.IndexByte(field, '\\') < 0 {
		return string(field), nil
	}
	b, err := pgvalue.AppendCopyUnescaped(make([]byte, 0, len(field)), field)
	return string(b), err
}
