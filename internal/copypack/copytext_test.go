package copypack

import (
	"testing"

	"github.com/pgflo/pgflo/internal/event"
)

func TestParseCopyLine(t *testing.T) {
	cols := []event.Column{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	cases := []struct {
		line string
		want event.Row
		err  bool
	}{
		{"1\thello\t\\N", event.Row{{Name: "a", Text: "1"}, {Name: "b", Text: "hello"}, {Name: "c", Null: true}}, false},
		{"\t\\\\N\tx", event.Row{{Name: "a", Text: ""}, {Name: "b", Text: "\\N"}, {Name: "c", Text: "x"}}, false},
		{"tab\\there\tnew\\nline\t\\x41\\101\\q", event.Row{{Name: "a", Text: "tab\there"}, {Name: "b", Text: "new\nline"}, {Name: "c", Text: "AAq"}}, false},
		{"1\t2", nil, true},
		{"1\t2\t3\t4", nil, true},
	}
	for _, c := range cases {
		got, err := ParseLine([]byte(c.line), cols, nil)
		if c.err {
			if err == nil {
				t.Errorf("%q: want an error", c.line)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", c.line, err)
		}
		if len(got) != len(c.want) {
			t.Fatalf("%q: got %+v", c.line, got)
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%q: field %d = %+v, want %+v", c.line, i, got[i], c.want[i])
			}
		}
	}
}
