package processors

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/redpanda-data/benthos/v4/public/bloblang"

	"github.com/pgflo/pgflo/internal/event"
	"github.com/pgflo/pgflo/internal/pgvalue"
	"github.com/pgflo/pgflo/internal/rules"
)

// Bloblang plugins are registered as a package variable's initializer, which
// runs before the init functions that build the processors' specs: their
// lint rules call pg_flo_lint_rules and pg_flo_lint_routes.
var _ = registerBloblang()

func registerBloblang() bool {
	bloblang.MustRegisterMethodV2("pg_flo_mask",
		bloblang.NewPluginSpec().
			Category("String Manipulation").
			Description("Masks a string as pg_flo_rules' mask transform does: keeps the first and the last character and replaces each one between with `mask_char`. Characters, not bytes: multibyte text stays valid. Strings of up to two characters are returned as they are.").
			Param(bloblang.NewStringParam("mask_char").Description("What each masked character becomes (one or more characters).")).
			Example("Mask an email in a raw or typed change event.", `root = this
root.new.email = this.new.email.pg_flo_mask("*")`,
				[2]string{`{"new":{"email":"alice@example.com"}}`, `{"new":{"email":"a***************m"}}`},
				[2]string{`{"new":{"email":"Zoë Ünïcode"}}`, `{"new":{"email":"Z*********e"}}`},
			),
		func(args *bloblang.ParsedParams) (bloblang.Method, error) {
			maskChar, err := args.GetString("mask_char")
			if err != nil {
				return nil, err
			}
			if maskChar == "" {
				return nil, fmt.Errorf("mask_char must not be empty")
			}
			return bloblang.StringMethod(func(s string) (any, error) {
				return rules.Mask(s, maskChar), nil
			}), nil
		})

	bloblang.MustRegisterMethodV2("pg_flo_decode",
		bloblang.NewPluginSpec().
			Category("Parsing").
			Description("Turns a value's PostgreSQL text form (as raw change events carry it) into its typed JSON value, as `pg_flo_decode` does; the type is a `pg_type.typname` (`int8`, `timestamptz`, `_text` for `text[]`, …), as in the event's `columns`. Types pgflo does not know stay text.").
			Param(bloblang.NewStringParam("type").Description("The column's type name, e.g. `int8` or `_int4`.")).
			Example("Read an array column of a raw event.", `root.tags = this.new.tags.pg_flo_decode("_text")`,
				[2]string{`{"new":{"tags":"{admin,\"on call\",NULL}"}}`, `{"tags":["admin","on call",null]}`},
			).
			Example("Decode a value by the type the event gives.", `root.at = this.new.created_at.pg_flo_decode(this.columns.filter(c -> c.name == "created_at").index(0).type)`,
				[2]string{`{"columns":[{"name":"created_at","type":"timestamptz","oid":1184}],"new":{"created_at":"2026-11-26 12:00:00.5+00"}}`, `{"at":"2026-11-26T12:00:00.5Z"}`},
			),
		func(args *bloblang.ParsedParams) (bloblang.Method, error) {
			col, err := columnArg(args)
			if err != nil {
				return nil, err
			}
			return bloblang.StringMethod(func(s string) (any, error) {
				typed, err := pgvalue.Decode(s, col)
				if err != nil {
					return nil, err
				}
				// Bloblang values are encoding/json's generic model.
				var v any
				dec := json.NewDecoder(bytes.NewReader(pgvalue.AppendJSON(nil, typed)))
				dec.UseNumber()
				if err := dec.Decode(&v); err != nil {
					return nil, err
				}
				return v, nil
			}), nil
		})

	bloblang.MustRegisterMethodV2("pg_flo_encode",
		bloblang.NewPluginSpec().
			Category("Parsing").
			Description("Turns a typed value back into its PostgreSQL text form, the reverse of `pg_flo_decode`: the exact text the source had, for values `pg_flo_decode` produced.").
			Param(bloblang.NewStringParam("type").Description("The column's type name, e.g. `timestamptz`.")).
			Example("Write a typed timestamp as PostgreSQL text.", `root.at = this.at.pg_flo_encode("timestamptz")`,
				[2]string{`{"at":"2026-11-26T12:00:00.5Z"}`, `{"at":"2026-11-26 12:00:00.5+00"}`},
			),
		func(args *bloblang.ParsedParams) (bloblang.Method, error) {
			col, err := columnArg(args)
			if err != nil {
				return nil, err
			}
			return func(v any) (any, error) {
				return pgvalue.Encode(v, col)
			}, nil
		})

	lintSpec := func(what, field string) *bloblang.PluginSpec {
		return bloblang.NewPluginSpec().
			Category("Environment").
			Description(fmt.Sprintf("Checks pg_flo %s as `pg_flo_%s` would load them, from a file (when `file` is not empty) or inline, and returns the problems found as a list of strings (empty when there is none). The lint rule of `pg_flo_%s` calls it, so `pgflo lint` reports a bad %s file.", what, field, field, what)).
			Param(bloblang.NewStringParam("file").Description("Path of the file, or empty.")).
			Param(bloblang.NewAnyParam("inline").Description("The inline YAML, or null.").Optional())
	}
	bloblang.MustRegisterFunctionV2("pg_flo_lint_rules", lintSpec("rules", "rules"), lintFunction(func(file string, inline any) error {
		_, err := rulesFrom(file, inline)
		return err
	}))
	bloblang.MustRegisterFunctionV2("pg_flo_lint_routes", lintSpec("routing", "route"), lintFunction(func(file string, inline any) error {
		_, err := routesFrom(file, inline)
		return err
	}))
	return true
}

func columnArg(args *bloblang.ParsedParams) (event.Column, error) {
	typ, err := args.GetString("type")
	if err != nil {
		return event.Column{}, err
	}
	return event.Column{Name: "value", Type: typ}, nil
}

// lintFunction adapts a loader to a lint function: a list of problems.
func lintFunction(load func(file string, inline any) error) bloblang.FunctionConstructorV2 {
	return func(args *bloblang.ParsedParams) (bloblang.Function, error) {
		file, err := args.GetString("file")
		if err != nil {
			return nil, err
		}
		inline, err := args.Get("inline")
		if err != nil {
			return nil, err
		}
		return func() (any, error) {
			if err := load(file, inline); err != nil {
				return []any{err.Error()}, nil
			}
			return []any{}, nil
		}, nil
	}
}
