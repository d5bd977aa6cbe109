package event

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// trickyStrings are inputs whose JSON encoding is easy to get wrong.
var trickyStrings = []struct{ name, s string }{
	{"empty", ""},
	{"plain", "hello, world"},
	{"quote", `say "hi"`},
	{"backslash", `C:\path\to`},
	{"escaped quote", `\"`},
	{"newline tab return", "a\nb\tc\rd"},
	{"backspace and form feed", "a\bb\fc"},
	{"NUL", "a\x00b"},
	{"all C0 controls", c0Controls()},
	{"DEL is not escaped", "a\x7fb"},
	{"HTML-sensitive", "<script>a && b</script>"},
	{"line and paragraph separators", "a\u2028b\u2029c"},
	{"other separators are kept", "a\u2027b\u202ac\u0085d"},
	{"multibyte", "é 日本語 🎉 ключ"},
	{"replacement character itself", "a\uFFFDb"},
	{"invalid byte", "a\xffb"},
	{"invalid leading bytes", "\x80\x81"},
	{"truncated multibyte at end", "abc\xe6\x97"},
	{"truncated multibyte in middle", "a\xe6\x97b"},
	{"overlong encoding", "\xc0\xaf"},
	{"UTF-16 surrogate encoded as UTF-8", "\xed\xa0\x80"},
	{"beyond U+10FFFF", "\xf4\x90\x80\x80"},
	{"PostgreSQL array text", `{"a b","c\"d",NULL}`},
	{"bytea hex", `\x0102ff`},
	{"mixed", "x\"\\\n\x01<\u2028\xff日\x00"},
}

func c0Controls() string {
	var b strings.Builder
	for c := byte(0); c < 0x20; c++ {
		b.WriteByte(c)
	}
	return b.String()
}

// TestAppendStringMatchesEncodingJSON pins AppendJSONString to encoding/json's
// string encoding byte for byte, so pgflo's wire form is what any Go program
// marshalling the same strings would write.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, tc := range trickyStrings {
		t.Run(tc.name, func(t *testing.T) {
			want, err := json.Marshal(tc.s)
			if err != nil {
				t.Fatal(err)
			}
			got := AppendJSONString(nil, tc.s)
			if string(got) != string(want) {
				t.Errorf("AppendJSONString(%q) = %s, want %s (encoding/json)", tc.s, got, want)
			}
			if !json.Valid(got) {
				t.Errorf("AppendJSONString(%q) = %s is not valid JSON", tc.s, got)
			}
			if utf8.ValidString(tc.s) {
				var back string
				if err := json.Unmarshal(got, &back); err != nil || back != tc.s {
					t.Errorf("decoding %s = %q, %v; want %q", got, back, err, tc.s)
				}
			}
		})
	}
}

func TestAppendStringAppends(t *testing.T) {
	got := AppendJSONString([]byte(`{"k":`), "v<")
	if want := `{"k":"v\u003c"`; string(got) != want {
		t.Errorf("AppendJSONString appended %s, want %s", got, want)
	}
}

// FuzzAppendString compares AppendJSONString with encoding/json on arbitrary
// strings, including invalid UTF-8.
func FuzzAppendString(f *testing.F) {
	for _, tc := range trickyStrings {
		f.Add(tc.s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendJSONString(nil, s)
		if string(got) != string(want) {
			t.Fatalf("AppendJSONString(%q) = %s, want %s (encoding/json)", s, got, want)
		}
	})
}
