// Package jsproto is the contract between pg_flo_jetstream (which publishes
// change events to NATS JetStream) and pg_flo_worker (which consumes them):
// the names of a group's stream, consumer, subjects and state bucket, the
// packed-message format, and the de-duplication ids. Both components import
// it, so the two sides cannot drift apart; it does not import Benthos, so it is
// tested on its own.
//
// Names follow pg_flo's, with one deliberate change: pg_flo publishes every
// change of a group to the single subject "pgflo.<group>", pgflo publishes to
// one subject per table, "pgflo.<group>.<schema>.<table>", so consumers can
// filter by table and the stream's subject filter is "pgflo.<group>.>".
package jsproto

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrInvalidGroup is returned (wrapped) by ValidateGroup.
var ErrInvalidGroup = errors.New("invalid group name")

// ErrInvalidSubject is returned (wrapped) by ValidateSubjectPrefix and
// ValidateFilterSubject.
var ErrInvalidSubject = errors.New("invalid subject")

// groupForbidden are the characters a group may not contain besides
// whitespace and control characters: '.', '*' and '>' would change the
// meaning of the group's subjects, '/' and '\' are rejected by JetStream in
// stream and consumer names (they become directory names).
const groupForbidden = ".*>/\\"

// ValidateGroup reports whether group can be used in every name derived from
// it. A group is a non-empty string without whitespace, control characters or
// any of . * > / \ (pg_flo uses the group verbatim in NATS names, so a group
// that pg_flo accepted and NATS could use passes).
func ValidateGroup(group string) error {
	if group == "" {
		return fmt.Errorf("%w: must not be empty", ErrInvalidGroup)
	}
	if !utf8.ValidString(group) {
		return fmt.Errorf("%w %q: not valid UTF-8", ErrInvalidGroup, group)
	}
	for _, r := range group {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(groupForbidden, r) {
			return fmt.Errorf("%w %q: must not contain whitespace, control characters or any of %q", ErrInvalidGroup, group, groupForbidden)
		}
	}
	return nil
}

// ValidateName reports whether name can name a JetStream stream or consumer:
// non-empty, without whitespace, control characters or any of . * > / \.
// kind ("stream", "consumer") prefixes the error.
func ValidateName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("invalid %s name: must not be empty", kind)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) || strings.ContainsRune(groupForbidden, r) {
			return fmt.Errorf("invalid %s name %q: must not contain whitespace, control characters or any of %q", kind, name, groupForbidden)
		}
	}
	return nil
}

// StreamName is the JetStream stream of a group, as pg_flo names it.
func StreamName(group string) string { return "pgflo_" + group + "_stream" }

// ConsumerName is the durable pull consumer of a group's worker, as pg_flo
// names it.
func ConsumerName(group string) string { return "pgflo_" + group + "_consumer" }

// StateBucket is the JetStream key-value bucket holding a group's state
// (resume position, finished snapshot chunks), as pg_flo names it.
func StateBucket(group string) string { return "pg_flo_state_" + group }

// SubjectPrefix is the subject prefix of a group's changes: "pgflo.<group>".
// pg_flo published everything to exactly this subject; pgflo appends the
// table (see Subject).
func SubjectPrefix(group string) string { return "pgflo." + group }

// GroupSubjects is the subject filter matching every change of a group,
// "pgflo.<group>.>": the stream's subjects and the worker's default filter.
func GroupSubjects(group string) string { return PrefixSubjects(SubjectPrefix(group)) }

// PrefixSubjects is the subject filter matching every subject under prefix.
func PrefixSubjects(prefix string) string { return prefix + ".>" }

// TableSubject is the subject of schema.table's changes under prefix:
// "<prefix>.<schema>.<table>", each name sanitized by SanitizeToken.
func TableSubject(prefix, schema, table string) string {
	return prefix + "." + SanitizeToken(schema) + "." + SanitizeToken(table)
}

// SanitizeToken turns a PostgreSQL name into a valid NATS subject token. NATS
// tokens are separated by '.', may not contain whitespace, and '*' and '>' are
// wildcards; so whitespace, control and other non-printable characters, '.',
// '*' and '>' are each replaced by '_', and an empty name becomes "_". Other
// characters, including non-ASCII letters, are kept.
//
// Sanitizing can map two names to one subject ("a.b" and "a_b"); that only
// affects subject-based filtering, never the data: the event body carries the
// exact schema and table names.
func SanitizeToken(name string) string {
	if name == "" {
		return "_"
	}
	clean := true
	for _, r := range name {
		if tokenRuneInvalid(r) {
			clean = false
			break
		}
	}
	if clean {
		return name
	}
	var b strings.Builder
	b.Grow(len(name))
	for _, r := range name {
		if tokenRuneInvalid(r) {
			b.WriteByte('_')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func tokenRuneInvalid(r rune) bool {
	return r == '.' || r == '*' || r == '>' || r == utf8.RuneError || unicode.IsSpace(r) || !unicode.IsPrint(r)
}

// ValidateSubjectPrefix reports whether prefix can prefix the per-table
// subjects: one or more non-empty tokens separated by '.', with no wildcards,
// whitespace or control characters.
func ValidateSubjectPrefix(prefix string) error {
	if prefix == "" {
		return fmt.Errorf("%w: subject prefix must not be empty", ErrInvalidSubject)
	}
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" {
			return fmt.Errorf("%w %q: empty token (leading, trailing or double '.')", ErrInvalidSubject, prefix)
		}
		if tok == "*" || tok == ">" || strings.ContainsAny(tok, "*>") {
			return fmt.Errorf("%w %q: a prefix must not contain wildcards", ErrInvalidSubject, prefix)
		}
		for _, r := range tok {
			if unicode.IsSpace(r) || !unicode.IsPrint(r) {
				return fmt.Errorf("%w %q: must not contain whitespace or control characters", ErrInvalidSubject, prefix)
			}
		}
	}
	return nil
}

// ValidateFilterSubject reports whether filter is a valid NATS subject filter:
// non-empty tokens without whitespace, where '*' stands for a whole token and
// '>' only as the last token.
func ValidateFilterSubject(filter string) error {
	if filter == "" {
		return fmt.Errorf("%w: filter subject must not be empty", ErrInvalidSubject)
	}
	toks := strings.Split(filter, ".")
	for i, tok := range toks {
		switch {
		case tok == "":
			return fmt.Errorf("%w %q: empty token (leading, trailing or double '.')", ErrInvalidSubject, filter)
		case tok == ">" && i != len(toks)-1:
			return fmt.Errorf("%w %q: '>' must be the last token", ErrInvalidSubject, filter)
		case tok != "*" && tok != ">" && strings.ContainsAny(tok, "*>"):
			return fmt.Errorf("%w %q: wildcards must be whole tokens", ErrInvalidSubject, filter)
		}
		for _, r := range tok {
			if unicode.IsSpace(r) || !unicode.IsPrint(r) {
				return fmt.Errorf("%w %q: must not contain whitespace or control characters", ErrInvalidSubject, filter)
			}
		}
	}
	return nil
}

// SubjectMatches reports whether subject (a literal subject) is matched by
// filter (a subject that may contain the wildcards '*' and '>').
func SubjectMatches(filter, subject string) bool {
	ft := strings.Split(filter, ".")
	st := strings.Split(subject, ".")
	for i, f := range ft {
		if f == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		if f != "*" && f != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

// Partitions. A group created with N > 1 partitions (pg_flo_jetstream's
// partitions) publishes each change to one of N subjects per table,
// "<prefix>.<schema>.<table>.<k>" (k from 0 to N-1), and runs one worker per
// partition; N is recorded in the stream's metadata. A group of one partition
// is laid out as before partitions existed.

// StreamMetaPartitions is the stream metadata key recording the number of
// partitions of a partitioned group's stream.
const StreamMetaPartitions = "pgflo_partitions"

// HeaderBarrier marks a barrier copy: a change that concerns rows of more
// than one partition (TRUNCATE, DDL, an UPDATE moving a row to another
// partition), or the end of a snapshot, published to every partition. Its
// value is the barrier's id (internal/partition.BarrierID); a copy without
// a body is a sync barrier, which carries no change.
const HeaderBarrier = "Pgflo-Barrier"

// StreamPartitions is the number of partitions recorded in a stream's
// metadata: 1 when none is recorded.
func StreamPartitions(metadata map[string]string) (int, error) {
	v, ok := metadata[StreamMetaPartitions]
	if !ok {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("stream metadata %s=%q is not a positive number of partitions", StreamMetaPartitions, v)
	}
	return n, nil
}

// PartitionSubject is the subject of partition k's changes of a table
// subject (see TableSubject): "<table subject>.<k>". Per-table filters
// ("<prefix>.<schema>.<table>.*") keep working.
func PartitionSubject(tableSubject string, k int) string {
	return tableSubject + "." + strconv.Itoa(k)
}

// PartitionFilter is the subject filter of partition k's changes of every
// table under prefix: "<prefix>.*.*.<k>".
func PartitionFilter(prefix string, k int) string {
	return prefix + ".*.*." + strconv.Itoa(k)
}

// PartitionConsumerName is the durable consumer of partition k's worker:
// "pgflo_<group>_consumer_p<k>".
func PartitionConsumerName(group string, k int) string {
	return ConsumerName(group) + "_p" + strconv.Itoa(k)
}

// PartitionIDSuffix is appended to the de-duplication id of partition k's
// copy of a barrier: "/p<k>".
func PartitionIDSuffix(k int) string { return "/p" + strconv.Itoa(k) }

// trimPartitionSuffix removes a PartitionIDSuffix from a message id.
func trimPartitionSuffix(id string) string {
	i := strings.LastIndex(id, "/p")
	if i < 0 || i+2 == len(id) {
		return id
	}
	for _, r := range id[i+2:] {
		if r < '0' || r > '9' {
			return id
		}
	}
	return id[:i]
}
