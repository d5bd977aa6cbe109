package apply

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestPermanent(t *testing.T) {
	pgErr := func(code string) error {
		return &ChangeError{Err: fmt.Errorf("statement: %w", &pgconn.PgError{Code: code})}
	}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"check violation", pgErr("23514"), true},
		{"unique violation", pgErr("23505"), true},
		{"invalid text for the type", pgErr("22P02"), true},
		{"value out of range", pgErr("22003"), true},
		{"undefined column", pgErr("42703"), true},
		{"insufficient privilege", pgErr("42501"), true},
		{"missing table", fmt.Errorf("%w: create it", ErrTableNotFound), true},
		{"unknown column", &unknownColumnError{"column x"}, true},
		{"serialization failure", pgErr("40001"), false},
		{"deadlock", pgErr("40P01"), false},
		{"lock timeout", pgErr("55P03"), false},
		{"server shutting down", pgErr("57P01"), false},
		{"connection exception", pgErr("08006"), false},
		{"lost connection", fmt.Errorf("%w: %w", ErrConnection, io.EOF), false},
		{"out of disk", pgErr("53100"), false},
		{"not from the target", errors.New("decode change event"), false},
		{"nil", nil, false},
	} {
		if got := Permanent(tc.err); got != tc.want {
			t.Errorf("%s: Permanent(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}
