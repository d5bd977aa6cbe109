package event

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner is the JSON reader under every mode of Decoder: a minimal lexer
// over one document, each method leaving i after what it read. It is
// hand-written because the output decodes every event of every batch and
// the processors every event they see; encoding/json's token reader would
// cost more CPU than the work done with the event.
type scanner struct {
	data []byte
	i    int
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("decode change event: offset %d: %s", s.i, what)
}

func (s *scanner) ws() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) consume(c byte) bool {
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// next checks that a ',' or '}' follows an object member; end consumes it
// and reports which it was.
func (s *scanner) next() error {
	s.ws()
	if s.i < len(s.data) && (s.data[s.i] == ',' || s.data[s.i] == '}') {
		return nil
	}
	return s.fail("expected ',' or '}'")
}

func (s *scanner) end() bool {
	c := s.data[s.i]
	s.i++
	return c == '}'
}

func (s *scanner) literal(word string) bool {
	if len(s.data)-s.i >= len(word) && string(s.data[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

func (s *scanner) null() bool { return s.literal("null") }

func (s *scanner) boolean() (bool, error) {
	switch {
	case s.literal("true"):
		return true, nil
	case s.literal("false"):
		return false, nil
	}
	return false, s.fail("expected a boolean")
}

// uint32 reads a JSON number that must be an integer of 32 bits without a
// sign (a transaction id, an OID).
func (s *scanner) uint32() (uint32, error) {
	start := s.i
	if err := s.number(); err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(s.data[start:s.i]), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%s is not a 32-bit unsigned integer", s.data[start:s.i])
	}
	return uint32(n), nil
}

// number reads -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?
func (s *scanner) number() error {
	start := s.i
	s.consume('-')
	digits := func() int {
		n := 0
		for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
			s.i++
			n++
		}
		return n
	}
	intStart := s.i
	if n := digits(); n == 0 {
		s.i = start
		return s.fail("expected a number")
	} else if n > 1 && s.data[intStart] == '0' {
		return s.fail("malformed number")
	}
	if s.consume('.') && digits() == 0 {
		return s.fail("malformed number")
	}
	if s.i < len(s.data) && (s.data[s.i] == 'e' || s.data[s.i] == 'E') {
		s.i++
		if !s.consume('+') {
			s.consume('-')
		}
		if digits() == 0 {
			return s.fail("malformed number")
		}
	}
	return nil
}

// spanPlain marks the bytes span passes over without a second look: not a
// quote, backslash, control character or the start of a multi-byte rune.
var spanPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// span reads a JSON string, checking its escapes, and returns its raw body
// (between the quotes) and whether that body is its value as it is (no
// escapes, valid UTF-8). Most strings of an event are short: a table
// lookup per byte beats searching for the closing quote.
func (s *scanner) span() (raw []byte, plain bool, err error) {
	if !s.consume('"') {
		return nil, false, s.fail("expected a string")
	}
	start := s.i
	escapes, high := false, false
	for {
		// In locals, so the loop keeps them in registers.
		data, i := s.data, s.i
		for i < len(data) && spanPlain[data[i]] {
			i++
		}
		s.i = i
		if s.i == len(s.data) {
			return nil, false, s.fail("unterminated string")
		}
		switch c := s.data[s.i]; {
		case c == '"':
			raw = s.data[start:s.i]
			s.i++
			return raw, !escapes && (!high || utf8.Valid(raw)), nil
		case c == '\\':
			escapes = true
			if s.i+1 >= len(s.data) {
				return nil, false, s.fail("unterminated string")
			}
			switch s.data[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if _, ok := hex4(s.data[s.i+2:]); !ok {
					return nil, false, s.fail("malformed \\u escape")
				}
				s.i += 6
			default:
				return nil, false, s.fail("malformed escape")
			}
		case c < 0x20:
			return nil, false, s.fail("control character in string")
		default:
			high = true
			s.i++
		}
	}
}

// str reads a JSON string, with encoding/json's treatment of escapes and of
// invalid UTF-8 (each bad byte becomes U+FFFD).
func (s *scanner) str() (string, error) {
	raw, plain, err := s.span()
	if err != nil {
		return "", err
	}
	if plain {
		return string(raw), nil
	}
	return unquote(raw), nil
}

// appendStr reads a JSON string and appends its value to buf.
func (s *scanner) appendStr(buf []byte) ([]byte, error) {
	raw, plain, err := s.span()
	if err != nil {
		return buf, err
	}
	if plain {
		return append(buf, raw...), nil
	}
	return appendUnquoted(buf, raw), nil
}

// key reads a member name and the ':' after it. The name is matched
// exactly, as docs/event.schema.json spells it: the bytes are returned
// as they are when they need no decoding (the usual case, free of
// allocation).
func (s *scanner) key() ([]byte, error) {
	s.ws()
	raw, plain, err := s.span()
	if err != nil {
		return nil, err
	}
	if !plain {
		raw = appendUnquoted(nil, raw)
	}
	s.ws()
	if !s.consume(':') {
		return nil, s.fail("expected ':'")
	}
	s.ws()
	return raw, nil
}

// unquote decodes the body of a JSON string that has escapes or bytes that
// are not valid UTF-8; span has checked its escapes.
func unquote(s []byte) string {
	return string(appendUnquoted(make([]byte, 0, len(s)), s))
}

// appendUnquoted appends the value of the JSON string body s to b.
func appendUnquoted(b, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if r := simpleEscapes[s[i+1]]; r != 0 {
				b = append(b, r)
				i += 2
				continue
			}
			r, _ := hex4(s[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2, ok2 := rune(0), false
				if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2, ok2 = hex4(s[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); ok2 && dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			b = utf8.AppendRune(b, r)
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, s[i:i+size]...)
			}
			i += size
		}
	}
	return b
}

// simpleEscapes maps the character after a backslash to what it stands
// for, for the one-character escapes of JSON.
var simpleEscapes = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func hex4(s []byte) (rune, bool) {
	if len(s) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range s[:4] {
		v, ok := hexDigit(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	return r, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// value reads over any JSON value and returns its raw bytes.
func (s *scanner) value() ([]byte, error) {
	start := s.i
	if s.i >= len(s.data) {
		return nil, s.fail("unexpected end")
	}
	switch c := s.data[s.i]; {
	case c == '"':
		if _, _, err := s.span(); err != nil {
			return nil, err
		}
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		s.i++
		s.ws()
		if s.consume(closer) {
			break
		}
		for {
			if c == '{' {
				if _, err := s.key(); err != nil {
					return nil, err
				}
			}
			s.ws()
			if _, err := s.value(); err != nil {
				return nil, err
			}
			s.ws()
			if s.consume(closer) {
				break
			}
			if !s.consume(',') {
				return nil, s.fail("expected ',' in a JSON value")
			}
			s.ws()
		}
	case c == 't' && s.literal("true"), c == 'f' && s.literal("false"), c == 'n' && s.null():
	default:
		if err := s.number(); err != nil {
			return nil, err
		}
	}
	return s.data[start:s.i], nil
}

// list calls item for each element of a JSON array.
func (s *scanner) list(item func() error) error {
	if !s.consume('[') {
		return s.fail("expected an array")
	}
	s.ws()
	if s.consume(']') {
		return nil
	}
	for {
		s.ws()
		if err := item(); err != nil {
			return err
		}
		s.ws()
		if s.consume(']') {
			return nil
		}
		if !s.consume(',') {
			return s.fail("expected ',' or ']'")
		}
	}
}

func (s *scanner) strings(field string) ([]string, error) {
	out := []string{}
	err := s.list(func() error {
		v, err := s.str()
		if err != nil {
			return fmt.Errorf("decode change event: field %s: %w", field, err)
		}
		out = append(out, v)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// parseLSN reads X/Y; the usual form directly, anything else as
// pglogrepl.ParseLSN does (its fmt.Sscanf is slow).
func parseLSN(s []byte) (uint64, error) {
	if slash := bytes.IndexByte(s, '/'); slash > 0 && slash <= 8 && len(s)-slash-1 > 0 && len(s)-slash-1 <= 8 {
		hi, okHi := hexValue(s[:slash])
		lo, okLo := hexValue(s[slash+1:])
		if okHi && okLo {
			return hi<<32 | lo, nil
		}
	}
	return 0, errors.New("not an LSN (X/Y, hexadecimal)")
}

func hexValue(s []byte) (uint64, bool) {
	var v uint64
	for _, c := range s {
		d, ok := hexDigit(c)
		if !ok {
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}
