// Package pgvalue is pgflo's one codec of PostgreSQL values: per built-in
// type its text form (what the type's output function writes under the
// sessions' pinned settings, event.TextFormSettings), its binary form, its
// typed JSON value, and its OID facts (oid.go). Each concern is one file,
// and no two convert the same thing:
//
//   - oid.go: the built-in types' OIDs and which of them have a binary
//     conversion here (the one table both directions read).
//   - copytext.go: COPY's text format escapes, written and read.
//   - copybinary.go: COPY's binary format: header, tuples, trailer.
//   - tobinary.go, scalar_tobinary.go, array_tobinary.go: text to binary
//     (COPY text rows into binary tuples, single values into array
//     parameters), strict: only the output functions' own text.
//   - totext.go, scalar_totext.go, array_totext.go, float.go: binary to
//     text, byte for byte what the output functions write.
//   - datetime.go: ISO dates and times: the server's calendar, reading
//     them into binary and writing them from it.
//   - array.go: array literals: the one scanner, and array_out's quoting.
//
// Typed JSON (typed.go, kind.go, json.go, array_typed.go, range.go,
// interval.go, bytea.go, datetime_typed.go, compare.go) converts between
// the text form, which raw change events carry, and typed JSON values, which
// pg_flo_decode writes for people and for rules (docs/decode.md). The
// conversion is lossless: Encode(Decode(text)) == text for every built-in
// type in PostgreSQL's default output settings, so a typed event can still
// be written back exactly (pg_flo_postgres calls Encode on each value).
//
// Typed values are plain Go values of encoding/json's generic model, with
// numbers as json.Number and json/jsonb documents as json.RawMessage: what
// Benthos (and json.Decoder.UseNumber) give when they parse a typed event.
// Encode accepts those, json.RawMessage for any type, and the values other
// parsers produce (float64, int64, …) where they are exact. EncodeJSON is
// Encode for a value's raw JSON, the way to read typed events exactly (a
// json document keeps its formatting only as raw JSON). Two things a typed
// value cannot say (docs/decode.md): a json/jsonb document that is JSON null
// reads back as SQL NULL, and a json document with line breaks is embedded
// compacted by AppendJSON.
//
// Compare and Equal order values as PostgreSQL does, for pg_flo_rules.
package pgvalue
