package copypack

import (
	"bytes"
	"fmt"

	"github.com/pgflo/pgflo/internal/event"
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
	b, err := AppendUnescaped(make([]byte, 0, len(field)), field)
	return string(b), err
}

// AppendUnescaped appends field with COPY text escapes decoded: \b \f \n \r
// \t \v \\, \digits (octal) and \xhex; any other escaped character stands
// for itself.
func AppendUnescaped(b, field []byte) ([]byte, error) {
	for i := 0; i < len(field); i++ {
		c := field[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		if i >= len(field) {
			return b, fmt.Errorf("COPY field ends with a lone backslash")
		}
		switch c = field[i]; c {
		case 'b':
			b = append(b, '\b')
		case 'f':
			b = append(b, '\f')
		case 'n':
			b = append(b, '\n')
		case 'r':
			b = append(b, '\r')
		case 't':
			b = append(b, '\t')
		case 'v':
			b = append(b, '\v')
		case '0', '1', '2', '3', '4', '5', '6', '7':
			v := int(c - '0')
			for n := 1; n < 3 && i+1 < len(field) && field[i+1] >= '0' && field[i+1] <= '7'; n++ {
				i++
				v = v*8 + int(field[i]-'0')
			}
			b = append(b, byte(v))
		case 'x':
			v, n := 0, 0
			for ; n < 2 && i+1 < len(field) && isHex(field[i+1]); n++ {
				i++
				v = v*16 + hexValue(field[i])
			}
			if n == 0 {
				b = append(b, 'x')
			} else {
				b = append(b, byte(v))
			}
		default:
			b = append(b, c)
		}
	}
	return b, nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func hexValue(c byte) int {
	switch {
	case c >= 'a':
		return int(c-'a') + 10
	case c >= 'A':
		return int(c-'A') + 10
	}
	return int(c - '0')
}
