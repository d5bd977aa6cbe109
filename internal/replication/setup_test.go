package replication

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// A refused connection names the setting to raise: max_wal_senders for a
// replication connection, max_connections for a regular one; other errors
// pass as they are; the password never shows.
func TestConnectErrorNamesExhaustedSetting(t *testing.T) {
	const dsn = "postgres://rep:s3cret@db:5432/app"
	tooMany := &pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "sorry, too many clients already"}
	tests := []struct {
		name        string
		replication bool
		err         error
		want        error
	}{
		{"wal senders", true, fmt.Errorf("failed to connect: %w", tooMany), ErrNoWalSender},
		{"connections", false, fmt.Errorf("failed to connect: %w", tooMany), ErrNoConnectionSlot},
		{"other", false, &pgconn.PgError{Code: "28P01", Message: "password authentication failed for s3cret"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := connectError(dsn, "s3cret", tt.replication, tt.err)
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error %v does not wrap %v", err, tt.want)
			}
			if tt.want == nil && (errors.Is(err, ErrNoWalSender) || errors.Is(err, ErrNoConnectionSlot)) {
				t.Fatalf("error %v names an exhausted setting", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}
