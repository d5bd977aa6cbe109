package apply

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
)

// ErrTypedValues is returned (wrapped) by DecodeEvent for an event whose
// values are typed JSON (after pg_flo_decode) rather than PostgreSQL text.
var ErrTypedValues = errors.New("event values are typed JSON")

// Decoder reads change events. It keeps what consecutive events of one
// table share (the column list, schema, table and commit time), so that
// reading them allocates little: the Columns of events it returns may be
// the same slice, to be treated as read-only. A Decoder is not safe for
// concurrent use; the zero value is ready.
type Decoder struct {
	colsRaw           []byte
	cols              []event.Column
	op, schema, table string
	commitRaw         []byte
	commitTime        time.Time
	offsets           []int
	// vals and texts are slabs the rows' values and texts are carved from:
	// a batch's events are decoded together and dropped together, so one
	// allocation serves many rows instead of two per row. Bytes below
	// len(texts) back strings already handed out and are never written
	// again; a slab that runs out is replaced, the old one living on as long
	// as rows point into it.
	vals  []event.Value
	texts []byte
}

// Slab sizes: each new slab twice the last, up to a few hundred rows, so a
// decoder used for one event allocates little.
const (
	slabValues = 4096
	slabText   = 64 << 10
)

// carveRow returns an empty row with room for n values, from the slab.
func (c *Decoder) carveRow(n int) event.Row {
	if cap(c.vals)-len(c.vals) < n {
		c.vals = make([]event.Value, 0, max(min(slabValues, 2*cap(c.vals)), n))
	}
	l := len(c.vals)
	return c.vals[l : l : l+n]
}

// keepRow records that row, carved by carveRow, is handed out.
func (c *Decoder) keepRow(row event.Row) {
	l := len(c.vals)
	if len(row) > 0 && l < cap(c.vals) && &c.vals[:l+1][l] == &row[0] {
		c.vals = c.vals[:l+len(row)]
	}
}

// DecodeEvent parses one change event's wire form into ev. It accepts
// exactly what event.Decode accepts, and gives the same result, but is many
// times faster: the output decodes every event of every batch, and
// event.Decode's token-based row reader would cost more CPU than applying
// the change. Members may come in any order; unknown members are skipped.
//
// A typed event ("typed": true: values as pg_flo_decode writes them, JSON
// numbers, booleans, arrays, objects or strings) is rejected with
// ErrTypedValues: its values are not PostgreSQL text.
func DecodeEvent(data []byte, ev *event.Event) error {
	var d Decoder
	return d.DecodeEvent(data, ev)
}

// DecodeEvent is the package's DecodeEvent, with the decoder's cache.
func (c *Decoder) DecodeEvent(data []byte, ev *event.Event) error {
	typed, err := decodeEvent(data, ev, nil, c)
	if err == nil && typed {
		err = fmt.Errorf("decode change event: %w (\"typed\": true)", ErrTypedValues)
	}
	return err
}

// DecodeAny parses one change event in either form: a raw event, whose
// values are PostgreSQL text, or a typed one (after pg_flo_decode), whose
// values are encoded back to their exact text form with pgvalue.
func DecodeAny(data []byte, ev *event.Event) error {
	var d Decoder
	return d.Decode(data, ev)
}

// Decode is DecodeAny with the decoder's cache.
func (c *Decoder) Decode(data []byte, ev *event.Event) error {
	err := c.DecodeEvent(data, ev)
	if !errors.Is(err, ErrTypedValues) {
		return err
	}
	var raw rawValues
	if _, err := decodeEvent(data, ev, &raw, c); err != nil {
		return err
	}
	types := make(map[string]event.Column, len(ev.Columns))
	for _, c := range ev.Columns {
		types[c.Name] = c
	}
	for _, r := range []struct {
		row  event.Row
		raws [][]byte
		name string
	}{{ev.New, raw.newRaw, "new"}, {ev.Old, raw.oldRaw, "old"}} {
		for i := range r.row {
			v := &r.row[i]
			if v.Null {
				continue
			}
			col, ok := types[v.Name]
			if !ok {
				return fmt.Errorf("decode change event: typed value of %s.%s, a column the event does not describe", r.name, v.Name)
			}
			text, err := pgvalue.EncodeJSON(r.raws[i], col)
			if err != nil {
				return fmt.Errorf("decode change event: %s.%s: %w", r.name, v.Name, err)
			}
			v.Text = text
		}
	}
	return nil
}

// rawValues holds the raw JSON of every value of a typed event.
type rawValues struct {
	newRaw, oldRaw [][]byte
}

func decodeEvent(data []byte, ev *event.Event, raw *rawValues, cache *Decoder) (typed bool, err error) {
	*ev = event.Event{}
	d := decoder{data: data, cache: cache}
	var (
		seenV, seenOp           bool
		lsnRaw, commitRaw       []byte
		commitTimeRaw           []byte
		hasCommitTime, lsnEscap bool
	)
	d.ws()
	if !d.consume('{') {
		return false, d.fail("expected a JSON object")
	}
	d.ws()
	if d.consume('}') {
		return false, errors.New("decode change event: unsupported version v=0 (this build reads v=1)")
	}
	for {
		d.ws()
		key, err := d.key(canonicalKey)
		if err != nil {
			return false, err
		}
		d.ws()
		if !d.consume(':') {
			return false, d.fail("expected ':'")
		}
		d.ws()
		switch key {
		case "v":
			n, err := d.integer()
			if err != nil {
				return false, fmt.Errorf("decode change event: field v: %w", err)
			}
			ev.V, seenV = int(n), true
		case "op":
			s, err := d.cachedStr("op", &cache.op)
			if err != nil {
				return false, err
			}
			ev.Op, seenOp = event.Op(s), true
		case "schema":
			if ev.Schema, err = d.cachedStr("schema", &cache.schema); err != nil {
				return false, err
			}
		case "table":
			if ev.Table, err = d.cachedStr("table", &cache.table); err != nil {
				return false, err
			}
		case "lsn":
			if lsnRaw, lsnEscap, err = d.rawField("lsn"); err != nil {
				return false, err
			}
		case "commit_lsn":
			var escaped bool
			if commitRaw, escaped, err = d.rawField("commit_lsn"); err != nil {
				return false, err
			}
			lsnEscap = lsnEscap || escaped
		case "xid":
			n, err := d.integer()
			if err != nil || n < 0 || n > 1<<32-1 {
				return false, fmt.Errorf("decode change event: field xid: not a 32-bit transaction id")
			}
			ev.Xid = uint32(n)
		case "commit_time":
			if d.null() {
				hasCommitTime = false
				break
			}
			var escaped bool
			if commitTimeRaw, escaped, err = d.rawField("commit_time"); err != nil {
				return false, err
			}
			if escaped { // rare: decode the escapes first
				s, _ := unquote(commitTimeRaw)
				commitTimeRaw = []byte(s)
			}
			hasCommitTime = true
		case "snapshot":
			b, err := d.boolean()
			if err != nil {
				return false, fmt.Errorf("decode change event: field snapshot: %w", err)
			}
			ev.Snapshot = b
		case "typed":
			b, err := d.boolean()
			if err != nil {
				return false, fmt.Errorf("decode change event: field typed: %w", err)
			}
			typed = b
		case "columns":
			if ev.Columns, err = d.cachedColumns(); err != nil {
				return false, err
			}
		case "new":
			var rawNew [][]byte
			if ev.New, rawNew, err = d.row(raw != nil, ev.Columns); err != nil {
				return false, err
			}
			if raw != nil {
				raw.newRaw = rawNew
			}
		case "old":
			var rawOld [][]byte
			if ev.Old, rawOld, err = d.row(raw != nil, ev.Columns); err != nil {
				return false, err
			}
			if raw != nil {
				raw.oldRaw = rawOld
			}
		case "unchanged_toast":
			if ev.UnchangedToast, err = d.strings("unchanged_toast"); err != nil {
				return false, err
			}
		default:
			if err := d.skip(); err != nil {
				return false, err
			}
		}
		if err := d.next(); err != nil {
			return false, err
		}
		if d.end() {
			break
		}
	}
	d.ws()
	if d.i != len(d.data) {
		return false, d.fail("unexpected data after the event")
	}
	if !seenV || ev.V != event.Version {
		return false, fmt.Errorf("decode change event: unsupported version v=%d (this build reads v=%d)", ev.V, event.Version)
	}
	if !seenOp || !ev.Op.Valid() {
		return false, fmt.Errorf("decode change event: unknown op %q", ev.Op)
	}
	if lsnEscap { // rare: decode the escapes first
		l, _ := unquote(lsnRaw)
		c, _ := unquote(commitRaw)
		lsnRaw, commitRaw = []byte(l), []byte(c)
	}
	if ev.LSN, err = parseLSN(lsnRaw); err != nil {
		return false, fmt.Errorf("decode change event: field lsn: %w", err)
	}
	if ev.CommitLSN, err = parseLSN(commitRaw); err != nil {
		return false, fmt.Errorf("decode change event: field commit_lsn: %w", err)
	}
	if hasCommitTime {
		if cache != nil && cache.commitRaw != nil && string(cache.commitRaw) == string(commitTimeRaw) {
			ev.CommitTime = cache.commitTime
		} else if ev.CommitTime, err = time.Parse(time.RFC3339Nano, string(commitTimeRaw)); err != nil {
			return false, fmt.Errorf("decode change event: field commit_time: %w", err)
		} else if cache != nil {
			cache.commitRaw = append(cache.commitRaw[:0], commitTimeRaw...)
			cache.commitTime = ev.CommitTime
		}
	}
	return typed, nil
}

// eventKeys are the members of an event.
var eventKeys = [...]string{"v", "op", "schema", "table", "lsn", "commit_lsn", "xid", "commit_time",
	"snapshot", "typed", "columns", "new", "old", "unchanged_toast"}

// canonicalKey maps a member name to the event member it stands for,
// case-insensitively as encoding/json matches struct fields, or "".
func canonicalKey(key []byte) string { return matchKey(key, eventKeys[:]) }

// columnKey is canonicalKey for the members of a column.
func columnKey(key []byte) string { return matchKey(key, columnKeys[:]) }

var columnKeys = [...]string{"name", "type", "oid", "key"}

func matchKey(key []byte, keys []string) string {
	for _, k := range keys {
		if k == string(key) {
			return k
		}
	}
	for _, k := range keys {
		if bytes.EqualFold([]byte(k), key) {
			return k
		}
	}
	return ""
}

// parseLSN reads X/Y; the usual form directly, anything else as
// pglogrepl.ParseLSN does (its fmt.Sscanf is slow).
func parseLSN(s []byte) (pglogrepl.LSN, error) {
	if len(s) == 0 {
		return 0, nil
	}
	if slash := bytes.IndexByte(s, '/'); slash > 0 && slash <= 8 && len(s)-slash-1 > 0 && len(s)-slash-1 <= 8 {
		hi, okHi := hexValue(s[:slash])
		lo, okLo := hexValue(s[slash+1:])
		if okHi && okLo {
			return pglogrepl.LSN(hi<<32 | lo), nil
		}
	}
	return pglogrepl.ParseLSN(string(s))
}

func hexValue(s []byte) (uint64, bool) {
	var v uint64
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint64(c-'A'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// decoder is a minimal JSON reader over one event.
type decoder struct {
	data  []byte
	i     int
	cache *Decoder // nil: no cache
}

func (d *decoder) fail(what string) error {
	return fmt.Errorf("decode change event: offset %d: %s", d.i, what)
}

func (d *decoder) ws() {
	for d.i < len(d.data) {
		switch d.data[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) consume(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// next reads the ',' or '}' after an object member; end reports which.
func (d *decoder) next() error {
	d.ws()
	if d.i < len(d.data) && (d.data[d.i] == ',' || d.data[d.i] == '}') {
		return nil
	}
	return d.fail("expected ',' or '}'")
}

// end consumes the ',' (false) or '}' (true) that next found.
func (d *decoder) end() bool {
	c := d.data[d.i]
	d.i++
	return c == '}'
}

func (d *decoder) literal(word string) bool {
	if len(d.data)-d.i >= len(word) && string(d.data[d.i:d.i+len(word)]) == word {
		d.i += len(word)
		return true
	}
	return false
}

func (d *decoder) null() bool { return d.literal("null") }

func (d *decoder) boolean() (bool, error) {
	switch {
	case d.literal("true"):
		return true, nil
	case d.literal("false"):
		return false, nil
	case d.null():
		return false, nil
	}
	return false, d.fail("expected a boolean")
}

// integer reads a JSON number that must be an integer (null reads as 0, as
// encoding/json leaves the field unset).
func (d *decoder) integer() (int64, error) {
	if d.null() {
		return 0, nil
	}
	start := d.i
	if err := d.number(); err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(d.data[start:d.i]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s is not an integer", d.data[start:d.i])
	}
	return n, nil
}

func (d *decoder) number() error {
	start := d.i
	d.consume('-')
	digits := func() int {
		n := 0
		for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	intStart := d.i
	if n := digits(); n == 0 {
		d.i = start
		return d.fail("expected a number")
	} else if n > 1 && d.data[intStart] == '0' {
		return d.fail("malformed number")
	}
	if d.consume('.') && digits() == 0 {
		return d.fail("malformed number")
	}
	if d.i < len(d.data) && (d.data[d.i] == 'e' || d.data[d.i] == 'E') {
		d.i++
		if !d.consume('+') {
			d.consume('-')
		}
		if digits() == 0 {
			return d.fail("malformed number")
		}
	}
	return nil
}

// strField reads a string member; null reads as "", as encoding/json does.
func (d *decoder) strField(name string) (string, error) {
	if d.null() {
		return "", nil
	}
	s, err := d.str()
	if err != nil {
		return "", fmt.Errorf("decode change event: field %s: %w", name, err)
	}
	return s, nil
}

// spanPlain marks the bytes span passes over without a second look: not a
// quote, backslash, control character or the start of a multi-byte rune.
var spanPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// span reads a JSON string and returns its raw body (between the quotes),
// and whether that body is its value as it is (no escapes, valid UTF-8).
func (d *decoder) span() (raw []byte, plain bool, err error) {
	if !d.consume('"') {
		return nil, false, d.fail("expected a string")
	}
	start := d.i
	escapes, high := false, false
	for d.i < len(d.data) {
		// Most bytes are plain: one table lookup each.
		for d.i < len(d.data) && spanPlain[d.data[d.i]] {
			d.i++
		}
		if d.i == len(d.data) {
			break
		}
		c := d.data[d.i]
		switch {
		case c == '"':
			raw = d.data[start:d.i]
			d.i++
			return raw, !escapes && (!high || utf8.Valid(raw)), nil
		case c == '\\':
			escapes = true
			d.i += 2
		case c < 0x20:
			return nil, false, d.fail("control character in string")
		case c >= utf8.RuneSelf:
			high = true
			d.i++
		default:
			d.i++
		}
	}
	return nil, false, d.fail("unterminated string")
}

// str reads a JSON string, with encoding/json's treatment of escapes and of
// invalid UTF-8 (each bad byte becomes U+FFFD).
func (d *decoder) str() (string, error) {
	raw, plain, err := d.span()
	if err != nil {
		return "", err
	}
	if plain {
		return string(raw), nil
	}
	return unquote(raw)
}

// appendStr reads a JSON string and appends its value to buf.
func (d *decoder) appendStr(buf []byte) ([]byte, error) {
	raw, plain, err := d.span()
	if err != nil {
		return buf, err
	}
	if plain {
		return append(buf, raw...), nil
	}
	return appendUnquoted(buf, raw)
}

// key reads a member name and returns what match makes of it.
func (d *decoder) key(match func([]byte) string) (string, error) {
	raw, plain, err := d.span()
	if err != nil {
		return "", err
	}
	if !plain {
		s, err := unquote(raw)
		if err != nil {
			return "", err
		}
		raw = []byte(s)
	}
	return match(raw), nil
}

// rawField reads a string member's raw body (null reads as empty), and
// whether it holds escapes.
func (d *decoder) rawField(name string) ([]byte, bool, error) {
	if d.null() {
		return nil, false, nil
	}
	raw, plain, err := d.span()
	if err != nil {
		return nil, false, fmt.Errorf("decode change event: field %s: %w", name, err)
	}
	if !plain {
		if _, err := unquote(raw); err != nil {
			return nil, false, fmt.Errorf("decode change event: field %s: %w", name, err)
		}
	}
	return raw, !plain, nil
}

// cachedStr is strField, returning *last when the value equals it (and
// remembering the value otherwise), so events of one table share strings.
func (d *decoder) cachedStr(name string, last *string) (string, error) {
	if d.cache == nil {
		return d.strField(name)
	}
	if d.null() {
		return "", nil
	}
	raw, plain, err := d.span()
	if err != nil {
		return "", fmt.Errorf("decode change event: field %s: %w", name, err)
	}
	if plain && string(raw) == *last {
		return *last, nil
	}
	var s string
	if plain {
		s = string(raw)
	} else if s, err = unquote(raw); err != nil {
		return "", fmt.Errorf("decode change event: field %s: %w", name, err)
	}
	*last = s
	return s, nil
}

// unquote decodes the body of a JSON string that has escapes or non-ASCII
// bytes.
func unquote(s []byte) (string, error) {
	b, err := appendUnquoted(make([]byte, 0, len(s)), s)
	return string(b), err
}

// appendUnquoted appends the value of the JSON string body s to b.
func appendUnquoted(b, s []byte) ([]byte, error) {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return b, errors.New("malformed escape")
			}
			e := s[i+1]
			if r := simpleEscapes[e]; r != 0 {
				b = append(b, r)
				i += 2
				continue
			}
			if e != 'u' {
				return b, fmt.Errorf("malformed escape \\%c", e)
			}
			r, ok := hex4(s[i+2:])
			if !ok {
				return b, errors.New("malformed \\u escape")
			}
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
	return b, nil
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
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// skip reads over any JSON value.
func (d *decoder) skip() error {
	d.ws()
	if d.i >= len(d.data) {
		return d.fail("unexpected end")
	}
	switch c := d.data[d.i]; {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{' || c == '[':
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		d.i++
		d.ws()
		if d.consume(closer) {
			return nil
		}
		for {
			if c == '{' {
				d.ws()
				if _, err := d.str(); err != nil {
					return err
				}
				d.ws()
				if !d.consume(':') {
					return d.fail("expected ':'")
				}
			}
			if err := d.skip(); err != nil {
				return err
			}
			d.ws()
			if d.consume(closer) {
				return nil
			}
			if !d.consume(',') {
				return d.fail("expected ',' in a JSON value")
			}
		}
	case c == 't':
		if d.literal("true") {
			return nil
		}
	case c == 'f':
		if d.literal("false") {
			return nil
		}
	case c == 'n':
		if d.null() {
			return nil
		}
	default:
		return d.number()
	}
	return d.fail("invalid JSON value")
}

// list calls item for each element of a JSON array (null is an empty list).
func (d *decoder) list(item func() error) error {
	if d.null() {
		return nil
	}
	if !d.consume('[') {
		return d.fail("expected an array")
	}
	d.ws()
	if d.consume(']') {
		return nil
	}
	for {
		d.ws()
		if err := item(); err != nil {
			return err
		}
		d.ws()
		if d.consume(']') {
			return nil
		}
		if !d.consume(',') {
			return d.fail("expected ',' or ']'")
		}
	}
}

func (d *decoder) strings(field string) ([]string, error) {
	out := []string{}
	err := d.list(func() error {
		s, err := d.strField(field)
		out = append(out, s)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// cachedColumns reads the column list, or takes the cache's when the
// member's text is the same as the previous event's.
func (d *decoder) cachedColumns() ([]event.Column, error) {
	c := d.cache
	if c != nil && c.colsRaw != nil && bytes.HasPrefix(d.data[d.i:], c.colsRaw) {
		d.i += len(c.colsRaw)
		return c.cols, nil
	}
	start := d.i
	cols, err := d.columns()
	if err == nil && c != nil {
		c.colsRaw = append(c.colsRaw[:0], d.data[start:d.i]...)
		c.cols = cols
	}
	return cols, err
}

func (d *decoder) columns() ([]event.Column, error) {
	var cols []event.Column
	err := d.list(func() error {
		var c event.Column
		if d.null() {
			cols = append(cols, c)
			return nil
		}
		if !d.consume('{') {
			return d.fail("field columns: expected an object")
		}
		d.ws()
		if d.consume('}') {
			cols = append(cols, c)
			return nil
		}
		for {
			d.ws()
			key, err := d.key(columnKey)
			if err != nil {
				return err
			}
			d.ws()
			if !d.consume(':') {
				return d.fail("expected ':'")
			}
			d.ws()
			switch key {
			case "name":
				c.Name, err = d.strField("columns.name")
			case "type":
				c.Type, err = d.strField("columns.type")
			case "oid":
				var n int64
				n, err = d.integer()
				if err == nil && (n < 0 || n > 1<<32-1) {
					err = errors.New("decode change event: field columns.oid: not an OID")
				}
				c.OID = uint32(n)
			case "key":
				c.Key, err = d.boolean()
			default:
				err = d.skip()
			}
			if err != nil {
				return err
			}
			if err := d.next(); err != nil {
				return err
			}
			if d.end() {
				break
			}
		}
		cols = append(cols, c)
		return nil
	})
	return cols, err
}

// row reads a row object. With keepRaw, every value's raw JSON is returned
// too (by position), and values that are not strings are accepted: that is
// how a typed event's values are read. Without it, a value that is not a
// string or null is an error. Names equal to the column's at the same
// position share its string, and all text values share one allocation.
func (d *decoder) row(keepRaw bool, cols []event.Column) (event.Row, [][]byte, error) {
	if d.null() {
		return nil, nil, nil
	}
	if !d.consume('{') {
		return nil, nil, d.fail("row: expected an object")
	}
	var raws [][]byte
	var scratch Decoder
	c := d.cache
	if c == nil {
		c = &scratch
	}
	row := c.carveRow(max(len(cols), 4))
	if room := cap(c.texts) - len(c.texts); room < slabText/8 && room < cap(c.texts)/2 || cap(c.texts) == 0 {
		c.texts = make([]byte, 0, min(slabText, max(1<<10, 2*cap(c.texts))))
	}
	// Texts are unescaped into the free end of the text slab (offsets: where
	// each ends); buf may move to a new array if the row outgrows the slab.
	textAt := len(c.texts)
	buf, offsets := c.texts[textAt:], c.offsets[:0]
	d.ws()
	if d.consume('}') {
		return row[:0:0], raws, nil // no room to append into the slab
	}
	for {
		d.ws()
		rawName, plain, err := d.span()
		if err != nil {
			return nil, nil, err
		}
		var name string
		switch n := len(row); {
		case plain && n < len(cols) && cols[n].Name == string(rawName):
			name = cols[n].Name
		case plain:
			name = string(rawName)
		default:
			if name, err = unquote(rawName); err != nil {
				return nil, nil, err
			}
		}
		d.ws()
		if !d.consume(':') {
			return nil, nil, d.fail("expected ':'")
		}
		d.ws()
		v := event.Value{Name: name}
		start := d.i
		switch {
		case d.null():
			v.Null = true
		case d.i < len(d.data) && d.data[d.i] == '"':
			if buf, err = d.appendStr(buf); err != nil {
				return nil, nil, err
			}
		default:
			if err := d.skip(); err != nil {
				return nil, nil, err
			}
			if !keepRaw {
				return nil, nil, fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", name, ErrTypedValues)
			}
		}
		if keepRaw {
			raws = append(raws, d.data[start:d.i])
		}
		offsets = append(offsets, len(buf))
		row = append(row, v)
		if err := d.next(); err != nil {
			return nil, nil, err
		}
		if d.end() {
			break
		}
	}
	var all string
	if len(buf) > 0 {
		// The bytes are final: nothing writes below the slab's length.
		all = unsafe.String(&buf[0], len(buf))
	}
	if textAt+len(buf) <= cap(c.texts) && len(buf) > 0 && &c.texts[:textAt+1][textAt] == &buf[0] {
		c.texts = c.texts[:textAt+len(buf)]
	} else if len(buf) > 0 {
		// buf moved out of the slab: it is this row's alone; start a new slab.
		c.texts = nil
	}
	from := 0
	for i := range row {
		row[i].Text = all[from:offsets[i]]
		from = offsets[i]
	}
	c.offsets = offsets
	c.keepRow(row)
	// Capped: appending to the row must not write into the slab's free end.
	return row[:len(row):len(row)], raws, nil
}
