package event

import "github.com/jackc/pglogrepl"

const upperHex = "0123456789ABCDEF"

// AppendLSN appends lsn in PostgreSQL's text form ("16/B374D848"), as
// pglogrepl.LSN.String does, without fmt: the replicator formats several LSNs
// per change.
func AppendLSN(buf []byte, lsn pglogrepl.LSN) []byte {
	buf = appendUpperHex(buf, uint32(lsn>>32))
	buf = append(buf, '/')
	return appendUpperHex(buf, uint32(lsn))
}

// FormatLSN returns lsn in PostgreSQL's text form.
func FormatLSN(lsn pglogrepl.LSN) string {
	var b [17]byte
	return string(AppendLSN(b[:0], lsn))
}

func appendUpperHex(buf []byte, v uint32) []byte {
	if v == 0 {
		return append(buf, '0')
	}
	var tmp [8]byte
	i := len(tmp)
	for v > 0 {
		i--
		tmp[i] = upperHex[v&0xF]
		v >>= 4
	}
	return append(buf, tmp[i:]...)
}
