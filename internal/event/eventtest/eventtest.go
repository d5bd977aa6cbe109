// Package eventtest holds the reference reader of the change event, for
// tests: encoding/json, one member at a time, by the rule internal/event
// states (exact member names; v, op, table and columns required; the
// schema's types). Tests hold event.Decoder's modes to it and read what
// the replicator and outputs wrote with it.
package eventtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgflo/pgflo/internal/event"
)

// Decode reads one raw change event (a typed one is an error, as for
// event.Decoder.DecodeEvent).
func Decode(data []byte) (*event.Event, error) {
	if !json.Valid(data) {
		var v any
		return nil, fmt.Errorf("decode change event: %w", json.Unmarshal(data, &v))
	}
	members, err := object(data)
	if err != nil {
		return nil, fmt.Errorf("decode change event: %w", err)
	}
	var (
		ev                 event.Event
		seen               = map[string]bool{}
		typed              bool
		lsn, commitLSN, op string
	)
	for _, m := range members {
		seen[m.name] = true
		switch m.name {
		case "v":
			err = strict(m.raw, &ev.V)
		case "op":
			err = strict(m.raw, &op)
			ev.Op = event.Op(op)
		case "schema":
			err = strict(m.raw, &ev.Schema)
		case "table":
			err = strict(m.raw, &ev.Table)
		case "lsn":
			ev.LSN, err = parseLSN(m.raw, &lsn)
		case "commit_lsn":
			ev.CommitLSN, err = parseLSN(m.raw, &commitLSN)
		case "xid":
			err = strict(m.raw, &ev.Xid)
		case "commit_time":
			ev.CommitTime, err = commitTime(m.raw)
		case "snapshot":
			err = strict(m.raw, &ev.Snapshot)
		case "typed":
			err = strict(m.raw, &typed)
		case "columns":
			ev.Columns, err = columns(m.raw)
		case "new":
			ev.New, err = row(m.raw)
		case "old":
			ev.Old, err = row(m.raw)
		case "unchanged_toast":
			ev.UnchangedToast, err = names(m.raw)
		}
		if err != nil {
			return nil, fmt.Errorf("decode change event: field %s: %w", m.name, err)
		}
	}
	if ev.V != event.Version {
		return nil, fmt.Errorf("decode change event: unsupported version v=%d (this build reads v=%d)", ev.V, event.Version)
	}
	if !ev.Op.Valid() {
		return nil, fmt.Errorf("decode change event: unknown op %q", ev.Op)
	}
	if !seen["table"] || !seen["columns"] {
		return nil, errors.New("decode change event: missing one of the members v, op, table, columns")
	}
	if typed {
		return nil, fmt.Errorf("decode change event: %w (\"typed\": true)", event.ErrTypedValues)
	}
	return &ev, nil
}

type member struct {
	name string
	raw  json.RawMessage
}

// object reads a JSON object's members in document order (a map would lose
// a row's column order).
func object(data []byte) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, errors.New("expected a JSON object")
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var m member
		m.name, _ = tok.(string)
		if err := dec.Decode(&m.raw); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

// strict is json.Unmarshal for a member that must not be null
// (encoding/json would leave the target as it is).
func strict(raw json.RawMessage, v any) error {
	if string(raw) == "null" {
		return errors.New("null")
	}
	return json.Unmarshal(raw, v)
}

var lsnForm = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)

func parseLSN(raw json.RawMessage, text *string) (pglogrepl.LSN, error) {
	if err := strict(raw, text); err != nil {
		return 0, err
	}
	if !lsnForm.MatchString(*text) {
		return 0, errors.New("not an LSN (X/Y, hexadecimal)")
	}
	return pglogrepl.ParseLSN(*text)
}

func commitTime(raw json.RawMessage) (time.Time, error) {
	if string(raw) == "null" {
		return time.Time{}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, err
	}
	return time.Parse(time.RFC3339Nano, s)
}

func columns(raw json.RawMessage) ([]event.Column, error) {
	var list []json.RawMessage
	if err := strict(raw, &list); err != nil {
		return nil, err
	}
	cols := []event.Column{}
	for _, item := range list {
		members, err := object(item)
		if err != nil {
			return nil, err
		}
		var c event.Column
		for _, m := range members {
			switch m.name {
			case "name":
				err = strict(m.raw, &c.Name)
			case "type":
				err = strict(m.raw, &c.Type)
			case "oid":
				err = strict(m.raw, &c.OID)
			case "key":
				err = strict(m.raw, &c.Key)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", m.name, err)
			}
		}
		cols = append(cols, c)
	}
	return cols, nil
}

func row(raw json.RawMessage) (event.Row, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	members, err := object(raw)
	if err != nil {
		return nil, err
	}
	r := make(event.Row, 0, len(members))
	for _, m := range members {
		v := event.Value{Name: m.name, Null: string(m.raw) == "null"}
		if !v.Null && (m.raw[0] != '"' || json.Unmarshal(m.raw, &v.Text) != nil) {
			return nil, fmt.Errorf("column %q: value must be a string (PostgreSQL text form) or null: %w", m.name, event.ErrTypedValues)
		}
		r = append(r, v)
	}
	return r, nil
}

func names(raw json.RawMessage) ([]string, error) {
	var list []*string
	if err := strict(raw, &list); err != nil {
		return nil, err
	}
	out := []string{}
	for _, s := range list {
		if s == nil {
			return nil, errors.New("a name is null")
		}
		out = append(out, *s)
	}
	return out, nil
}
