package pgvalue

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// parseBytea reads bytea's hex output (`\x0102ff`, the default) or its
// escape output (`abc\000\\`, bytea_output = escape).
func parseBytea(text string) ([]byte, error) {
	if rest, ok := strings.CutPrefix(text, `\x`); ok {
		out, err := hex.DecodeString(rest)
		if err != nil {
			return nil, fmt.Errorf("bad hex bytea: %w", err)
		}
		return out, nil
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		switch {
		case i+1 < len(text) && text[i+1] == '\\':
			out = append(out, '\\')
			i++
		case i+3 < len(text) && isOctal(text[i+1]) && isOctal(text[i+2]) && isOctal(text[i+3]) && text[i+1] <= '3':
			out = append(out, (text[i+1]-'0')<<6|(text[i+2]-'0')<<3|(text[i+3]-'0'))
			i += 3
		default:
			return nil, errors.New("bad escape in bytea")
		}
	}
	return out, nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// appendBytea writes bytea's hex form from base64 (the typed form), from the
// hex text form itself, or from raw bytes.
func appendBytea(buf []byte, v any) ([]byte, error) {
	var raw []byte
	switch x := v.(type) {
	case string:
		if strings.HasPrefix(x, `\x`) {
			if _, err := parseBytea(x); err != nil {
				return nil, err
			}
			return append(buf, strings.ToLower(x)...), nil
		}
		var err error
		if raw, err = base64.StdEncoding.DecodeString(x); err != nil {
			return nil, fmt.Errorf("want base64 or \\x hex: %w", err)
		}
	case []byte:
		raw = x
	default:
		return nil, fmt.Errorf("want a base64 string, not %T", v)
	}
	buf = append(buf, `\x`...)
	return appendHex(buf, raw), nil
}
