package benchkit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// FileLines follows a file that a worker appends lines to (its output), and
// hands each complete line to a callback.
type FileLines struct {
	path    string
	off     int64
	partial []byte // an incomplete last line, completed by the next read
	buf     []byte
}

// NewFileLines follows path, reading bufSize bytes at a time.
func NewFileLines(path string, bufSize int) *FileLines {
	return &FileLines{path: path, buf: make([]byte, bufSize)}
}

// Offset is how many bytes of the file were read.
func (f *FileLines) Offset() int64 { return f.off }

// Poll reads what was appended to the file since the last poll and calls line
// for every line completed (without its newline; line must not keep it). A
// file that does not exist yet is empty.
func (f *FileLines) Poll(line func([]byte)) error {
	file, err := os.Open(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read worker output: %w", err)
	}
	defer file.Close()
	if _, err := file.Seek(f.off, io.SeekStart); err != nil {
		return fmt.Errorf("read worker output: %w", err)
	}
	for {
		n, err := file.Read(f.buf)
		if n > 0 {
			f.off += int64(n)
			f.consume(f.buf[:n], line)
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read worker output: %w", err)
		}
	}
}

func (f *FileLines) consume(data []byte, line func([]byte)) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			f.partial = append(f.partial, data...)
			return
		}
		l := data[:i]
		if len(f.partial) > 0 {
			l = append(f.partial, l...)
			f.partial = f.partial[:0]
		}
		line(l)
		data = data[i+1:]
	}
}

// Clip shortens a line for a report to at most n bytes, marking the cut.
func Clip(line []byte, n int) string {
	if len(line) > n {
		return string(line[:n]) + "…"
	}
	return string(line)
}
