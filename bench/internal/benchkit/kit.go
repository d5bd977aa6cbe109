package benchkit

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
)

// Say prints a progress line to stderr.
func Say(format string, args ...any) { fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...) }

// Warn prints a warning to stderr.
func Warn(format string, args ...any) { fmt.Fprintf(os.Stderr, "warning: "+format+"\n", args...) }

// ResolveBin returns the absolute path of the pgflo binary named by --bin, or
// an error telling how to build it.
func ResolveBin(bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", fmt.Errorf("--bin %s: %w", bin, err)
	}
	st, err := os.Stat(abs)
	if err != nil || !st.Mode().IsRegular() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("--bin %s: not an executable file; build it first (make build, or go build -o pgflo .)", bin)
	}
	return abs, nil
}

// Measurement is one reader's time for a workload.
type Measurement struct {
	Reader  string
	Seconds float64
	OK      bool   // false: not measured
	Note    string // why not, when !OK
}

// Rate is n items over the measured time, per second.
func (m Measurement) Rate(n int) float64 { return float64(n) / m.Seconds }

// MB formats a byte count in MiB, "unknown" when not positive.
func MB(bytes int64) string {
	if bytes <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%.1f MB", float64(bytes)/(1<<20))
}

// Thousands formats n with comma separators.
func Thousands(n int) string {
	s := strconv.Itoa(n)
	if n < 0 {
		return "-" + Thousands(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// WriteReport writes report to path, creating its directory.
func WriteReport(path, report string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	return nil
}

// MinMedian is the smallest of xs and their median (the mean of the middle
// two of an even count); zeros when xs is empty.
// Median is the median of xs (MinMedian's).
func Median(xs []float64) float64 {
	_, m := MinMedian(xs)
	return m
}

func MinMedian(xs []float64) (minimum, median float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	s := slices.Sorted(slices.Values(xs))
	if n := len(s); n%2 == 1 {
		median = s[n/2]
	} else {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return s[0], median
}
