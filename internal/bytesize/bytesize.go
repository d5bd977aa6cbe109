// Package bytesize reads and writes byte counts as people write them
// ("1GiB", "512 MB", "1.5 KiB"): config fields that are sizes, and the
// sizes pgflo reports in logs and command output.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Format writes n bytes with IEC units, one decimal ("1.5 GiB"), or in
// bytes below 1 KiB.
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// units are the suffixes Parse accepts, lower-cased: IEC (KiB, powers of
// 1024) and, as PostgreSQL's own settings read them, kB/MB/GB/TB as powers
// of 1024 too.
var units = map[string]float64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// Parse reads a size: a number, optionally with a fraction, and a unit
// (B, KiB, MiB, GiB, TiB; kB, MB, GB, TB mean the same, as in
// postgresql.conf). It rejects negative sizes.
func Parse(text string) (int64, error) {
	s := strings.TrimSpace(text)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	number, unit := s[:i], strings.ToLower(strings.TrimSpace(s[i:]))
	mult, ok := units[unit]
	if number == "" || !ok {
		return 0, fmt.Errorf("%q is not a size: write a number and a unit, such as 512MiB or 1GiB", text)
	}
	v, err := strconv.ParseFloat(number, 64)
	if err != nil || v*mult > math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size: write a number and a unit, such as 512MiB or 1GiB", text)
	}
	return int64(v * mult), nil
}
