package pgvalue

import (
	"math/rand/v2"
	"testing"
)

// Escaping writes what COPY ... TO writes, and unescaping reads it back.
func TestCopyTextEscapes(t *testing.T) {
	in := "a\\b\tc\nd\re\bf\fg\vh long enough for a word at a time\x01"
	want := `a\\b\tc\nd\re\bf\fg\vh long enough for a word at a time` + "\x01"
	got := AppendCopyEscaped([]byte("x"), in)
	if string(got) != "x"+want {
		t.Fatalf("escaped %q, want %q", got, want)
	}
	back, err := AppendCopyUnescaped(nil, got[1:])
	if err != nil || string(back) != in {
		t.Fatalf("unescaped %q (%v), want %q", back, err, in)
	}
	tail := escapeTail([]byte("x"+in), 1)
	if string(tail) != "x"+want {
		t.Fatalf("escaped in place %q, want %q", tail, want)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		back, err := AppendCopyUnescaped(nil, AppendCopyEscaped(nil, string(b)))
		if err != nil || string(back) != string(b) {
			t.Fatalf("%q came back as %q (%v)", b, back, err)
		}
	}
	for field, want := range map[string]string{`\101\x41\x4g\q\\`: "AA\x04gq\\", `\x`: "x", `\0`: "\x00"} {
		if got, err := AppendCopyUnescaped(nil, []byte(field)); err != nil || string(got) != want {
			t.Errorf("%q unescaped %q (%v), want %q", field, got, err, want)
		}
	}
	if _, err := AppendCopyUnescaped(nil, []byte(`a\`)); err == nil {
		t.Error("a lone backslash at the end: want an error")
	}
}
