package copypack

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/pgflo/pgflo/internal/event"
)

var testColumns = []event.Column{{Name: "id", Type: "int8", OID: 20, Key: true}, {Name: "note", Type: "text", OID: 25}, {Name: "tags", Type: "_text", OID: 1009}}

func testBody(lines ...string) []byte {
	body := AppendHeader(nil, NewHeader("public", "users", testColumns, 0x16B3748))
	for _, l := range lines {
		body = append(body, l...)
		body = append(body, '\n')
	}
	return body
}

// The expander writes, byte for byte, what encoding each row's event does.
func TestEventsMatchAppendJSON(t *testing.T) {
	lines := []string{
		"1\thello\t{a,b}",
		"2\t\\N\t\\N",
		"3\ttab\\there \\\\ \"quoted\" <html> & \\n\\r\\b\\f\\v \\x41\\101 é ✓ \u2028\t{}",
		"4\t\t{\"x y\",NULL}",
		"5\t\xff\xfe invalid utf8\t{}",
	}
	p, err := Parse(testBody(lines...))
	if err != nil {
		t.Fatal(err)
	}
	if p.N != len(lines) || p.Schema != "public" || p.Table != "users" || p.LSNValue != 0x16B3748 {
		t.Fatalf("parsed %+v", p)
	}
	events, err := p.Events()
	if err != nil {
		t.Fatal(err)
	}
	var rows []event.Row
	if err := p.Values(func(i int, row event.Row) error {
		rows = append(rows, append(event.Row(nil), row...))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range lines {
		ev := p.Template()
		ev.New = rows[i]
		want := ev.AppendJSON(nil)
		if !bytes.Equal(events[i], want) {
			t.Errorf("row %d:\n got %s\nwant %s", i, events[i], want)
		}
		if !json.Valid(events[i]) {
			t.Errorf("row %d: not valid JSON: %s", i, events[i])
		}
	}
	if got := rows[2][1].Text; got != "tab\there \\ \"quoted\" <html> & \n\r\b\f\v AA é ✓ \u2028" {
		t.Errorf("row 2 note = %q", got)
	}
	if !rows[1][1].Null || rows[0][1].Null {
		t.Errorf("NULLs: %+v %+v", rows[0][1], rows[1][1])
	}
}

func TestParseRejects(t *testing.T) {
	good := testBody("1\ta\t{}")
	cases := map[string][]byte{
		"no header":     []byte(`{"v":1}`),
		"bad json":      append([]byte("{\n"), "1\ta\t{}\n"...),
		"wrong format":  bytes.Replace(good, []byte(`"format":"copy"`), []byte(`"format":"csv"`), 1),
		"wrong version": bytes.Replace(good, []byte(`"v":1`), []byte(`"v":9`), 1),
		"no rows":       testBody(),
		"unterminated":  good[:len(good)-1],
	}
	for name, body := range cases {
		if _, err := Parse(body); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
	p, err := Parse(testBody("1\ta"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Events(); !errors.Is(err, ErrMalformed) {
		t.Errorf("short row: got %v, want ErrMalformed", err)
	}
}

func BenchmarkEvents(b *testing.B) {
	body := testBody()
	for range 1024 {
		body = append(body, "123456\tsome text with \\t a tab and more words\t{a,b,c}\n"...)
	}
	p, err := Parse(body)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(p.Rows)))
	for b.Loop() {
		if _, err := p.Events(); err != nil {
			b.Fatal(err)
		}
	}
}

// Any COPY text line expands to what parsing it and encoding the event
// gives, or both refuse it.
func FuzzExpand(f *testing.F) {
	for _, l := range []string{"1\ta\t{}", "2\t\\N\t\\N", "3\t\\x41\\101\\\\\\t\t\"", "\t\t", "4\t\xff<>&\u2028\t\\"} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsRune(line, '\n') {
			return
		}
		p, err := Parse(testBody(line))
		if err != nil {
			t.Fatal(err)
		}
		x := NewExpander(p)
		got, expandErr := x.AppendEvent(nil, []byte(line))
		row, parseErr := ParseLine([]byte(line), p.Columns, nil)
		if (expandErr == nil) != (parseErr == nil) {
			t.Fatalf("%q: expand error %v, parse error %v", line, expandErr, parseErr)
		}
		if parseErr != nil {
			return
		}
		ev := p.Template()
		ev.New = row
		if want := ev.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("%q:\n got %s\nwant %s", line, got, want)
		}
	})
}

// binaryTuple builds one binary COPY tuple of the test columns (id int8,
// note text, tags text[] of one element or NULL).
func binaryTuple(id int64, note *string, tag *string) []byte {
	b := binary.BigEndian.AppendUint16(nil, 3)
	b = binary.BigEndian.AppendUint32(b, 8)
	b = binary.BigEndian.AppendUint64(b, uint64(id))
	if note == nil {
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	} else {
		b = binary.BigEndian.AppendUint32(b, uint32(len(*note)))
		b = append(b, *note...)
	}
	if tag == nil {
		return binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	// ndim 1, no NULLs, element text, one element with lower bound 1.
	arr := binary.BigEndian.AppendUint32(nil, 1)
	arr = binary.BigEndian.AppendUint32(arr, 0)
	arr = binary.BigEndian.AppendUint32(arr, 25)
	arr = binary.BigEndian.AppendUint32(arr, 1)
	arr = binary.BigEndian.AppendUint32(arr, 1)
	arr = binary.BigEndian.AppendUint32(arr, uint32(len(*tag)))
	arr = append(arr, *tag...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(arr)))
	return append(b, arr...)
}

// A binary pack stands for exactly the events of the text pack of the same
// rows; a broken tuple is ErrMalformed.
func TestBinaryPackEventsMatchTextPack(t *testing.T) {
	str := func(s string) *string { return &s }
	body := AppendHeader(nil, NewBinaryHeader("public", "users", testColumns, 0x16B3748))
	body = append(body, binaryTuple(1, str("hello"), str("a b"))...)
	body = append(body, binaryTuple(-2, nil, nil)...)
	body = append(body, binaryTuple(3, str("tab\there \\ \"q\" \n é"), str(""))...)
	p, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Binary || p.N != 3 {
		t.Fatalf("parsed binary %v, %d rows", p.Binary, p.N)
	}
	got, err := p.Events()
	if err != nil {
		t.Fatal(err)
	}
	want, err := mustParse(t, testBody("1\thello\t{\"a b\"}", "-2\t\\N\t\\N", "3\ttab\\there \\\\ \"q\" \\n é\t{\"\"}")).Events()
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("row %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	for name, rows := range map[string][]byte{
		"truncated":   binaryTuple(1, str("hello"), nil)[:12],
		"field count": append([]byte{0, 2}, binaryTuple(1, nil, nil)[2:]...),
	} {
		broken := append(AppendHeader(nil, NewBinaryHeader("public", "users", testColumns, 0x16B3748)), rows...)
		if _, err := Parse(broken); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %v, want ErrMalformed", name, err)
		}
	}
}

func mustParse(t *testing.T, body []byte) *Pack {
	t.Helper()
	p, err := Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Split cuts a pack into packs of whole rows within the bound, each with
// the header, whose events are together those of the whole pack, in order;
// a single row larger than the bound is a pack of its own.
func TestSplit(t *testing.T) {
	long := strings.Repeat("x", 300)
	note := func(s string) *string { return &s }
	var lines []string
	binaryBody := AppendHeader(nil, NewBinaryHeader("public", "users", testColumns, 0x16B3748))
	for i := range 20 {
		text := "row " + strings.Repeat("n", i*7)
		if i == 9 {
			text = long
		}
		lines = append(lines, strconv.Itoa(i)+"\t"+text+"\t{a}")
		binaryBody = append(binaryBody, binaryTuple(int64(i), note(text), note("a"))...)
	}
	for name, body := range map[string][]byte{"text": testBody(lines...), "binary": binaryBody} {
		t.Run(name, func(t *testing.T) {
			whole, err := mustParse(t, body).Events()
			if err != nil {
				t.Fatal(err)
			}
			headerLen := bytes.IndexByte(body, '\n') + 1
			limit := headerLen + 120
			bodies, rows, err := Split(body, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(bodies) < 4 || len(bodies) != len(rows) {
				t.Fatalf("%d bodies, %d row counts: want several, one count each", len(bodies), len(rows))
			}
			var got [][]byte
			for i, b := range bodies {
				p := mustParse(t, b)
				if p.N != rows[i] {
					t.Fatalf("piece %d holds %d rows, Split says %d", i, p.N, rows[i])
				}
				if len(b) > limit && p.N != 1 {
					t.Fatalf("piece %d is %d bytes of %d rows, over the bound %d", i, len(b), p.N, limit)
				}
				events, err := p.Events()
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, events...)
			}
			if len(got) != len(whole) {
				t.Fatalf("%d events from the pieces, %d from the pack", len(got), len(whole))
			}
			for i := range whole {
				if !bytes.Equal(got[i], whole[i]) {
					t.Fatalf("event %d differs:\n%s\n%s", i, got[i], whole[i])
				}
			}
			if kept, rows, err := Split(body, len(body)); err != nil || len(kept) != 1 || !bytes.Equal(kept[0], body) || rows[0] != 20 {
				t.Fatalf("a pack within the bound: %d bodies, rows %v, %v", len(kept), rows, err)
			}
		})
	}
}
