package event

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestFormatLSNMatchesPglogrepl(t *testing.T) {
	for _, lsn := range []pglogrepl.LSN{0, 1, 0x16B3748, 0x1_0000_0000, 0xFFFFFFFF_FFFFFFFF, 0xA0_0000000F} {
		if got, want := FormatLSN(lsn), lsn.String(); got != want {
			t.Errorf("FormatLSN(%d) = %q, want %q", uint64(lsn), got, want)
		}
	}
}
