package replication

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// The paced reader hands on every byte in order, however the stream is cut,
// and pauses only after a small read that followed another one closely.
func TestPacedReaderKeepsTheStream(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 16)
	p := &pacedReader{r: iotest.OneByteReader(iotest.HalfReader(bytes.NewReader(want)))}
	got, err := io.ReadAll(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d written", len(got), len(want))
	}
	one := &pacedReader{r: bytes.NewReader(want)}
	for range 2 {
		if _, err := one.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if !one.small {
		t.Error("two small reads in a row did not make the reader pause")
	}
	big := &pacedReader{r: bytes.NewReader(want)}
	if _, err := big.Read(make([]byte, len(want))); err != nil {
		t.Fatal(err)
	}
	if big.small {
		t.Error("a large read made the reader pause")
	}
}
