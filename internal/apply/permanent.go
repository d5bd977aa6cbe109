package apply

import (
	"errors"
)

// Permanent reports whether err, a failure of ApplyBatch, is one that
// applying the change again cannot fix, so that waiting and retrying only
// stops the group: the target refuses the change's data (SQLSTATE class 22,
// data exception: a value out of range, invalid text for the type), breaks
// one of its constraints (class 23: a CHECK, a unique index, a foreign key,
// NOT NULL that only the target has), or does not have what it names (class
// 42: a missing table or column, a type mismatch, a missing privilege), and
// a target table that does not exist. A lost connection, a serialization
// failure, a deadlock, a lock timeout, or a server shutting down are
// transient and not permanent: the change is applied once the target
// recovers.
func Permanent(err error) bool {
	if err == nil || errors.Is(err, ErrConnection) || connectionLost(err) {
		return false
	}
	var unknownCol *unknownColumnError
	if errors.Is(err, ErrTableNotFound) || errors.As(err, &unknownCol) {
		return true
	}
	code := sqlState(err)
	if len(code) != 5 {
		return false
	}
	switch code[:2] {
	case "22", "23", "42":
		return true
	}
	return false
}
