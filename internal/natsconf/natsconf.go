// Package natsconf declares the NATS connection fields that pgflo's
// components share and parses them into a jsproto.ConnConfig, so every
// component documents, accepts and validates the same settings:
// pg_flo_jetstream and pg_flo_worker list them among their own fields,
// pg_flo_replicator holds them in its `nats` object (ObjectField).
//
// It is adapter support: it imports Benthos' public/service, so engine
// packages do not use it; they take the jsproto.ConnConfig it returns.
package natsconf

import (
	"fmt"
	"strings"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/confread"
	"github.com/pgflo/pgflo/internal/jsproto"
)

// Field names of the connection settings, as both components spell them.
const (
	FieldURL       = "url"
	FieldUser      = "user"
	FieldPassword  = "password"
	FieldToken     = "token"
	FieldCredsFile = "creds_file"
	FieldNkeyFile  = "nkey_file"
	FieldTLS       = "tls"
)

// DefaultURL is the url of a NATS server on the local host, where the
// `pgflo nats` command and a stock nats-server listen.
const DefaultURL = "nats://127.0.0.1:4222"

// URLField returns the url field with DefaultURL as its default. It is kept
// apart from AuthFields because the components list it first and may
// document it further (Description replaces, Example adds).
func URLField() *service.ConfigField {
	return service.NewStringField(FieldURL).
		Description("NATS server URL; several may be given separated by commas.").
		Default(DefaultURL).
		Example("nats://localhost:4222").
		Secret() // a URL may carry user:password@, in any of its servers
}

// AuthFields returns the authentication fields (user and password, token,
// credentials file or NKey seed file, at most one of them) and the TLS
// settings, in the order the components list them after their own fields.
func AuthFields() []*service.ConfigField {
	return []*service.ConfigField{
		service.NewStringField(FieldUser).
			Description("User name for NATS user/password authentication.").
			Default(""),
		service.NewStringField(FieldPassword).
			Description("Password for NATS user/password authentication.").
			Default("").
			Secret(),
		service.NewStringField(FieldToken).
			Description("Token for NATS token authentication.").
			Default("").
			Secret(),
		service.NewStringField(FieldCredsFile).
			Description("Path to a NATS credentials file (JWT and NKey seed) for decentralized authentication.").
			Default("").
			Example("./nats.creds"),
		service.NewStringField(FieldNkeyFile).
			Description("Path to a file holding a NATS NKey user seed (`SU…`), for NKey authentication: the seed signs the server's challenge and is never sent.").
			Default("").
			Example("./user.nk"),
		service.NewTLSToggledField(FieldTLS),
	}
}

// ObjectField returns every connection field as the children of one object
// field called name, for a component whose NATS connection is optional
// (pg_flo_replicator's `nats`): its url has no default, and without a url
// the component runs without NATS (ParseConnAt reports it). urlDescription
// documents the url.
func ObjectField(name, description, urlDescription string) *service.ConfigField {
	url := service.NewStringField(FieldURL).
		Description(urlDescription).
		Example("nats://localhost:4222").
		Optional().
		Secret() // as URLField
	return service.NewObjectField(name, append([]*service.ConfigField{url}, AuthFields()...)...).
		Description(description)
}

// ParseConn reads the fields of URLField and AuthFields from conf and
// validates them together (jsproto.ConnConfig.Validate). The caller sets
// the connection's Name and callbacks.
func ParseConn(conf *service.ParsedConfig) (jsproto.ConnConfig, error) {
	r := confread.New(conf)
	c := jsproto.ConnConfig{
		URL:       r.String(FieldURL),
		User:      r.String(FieldUser),
		Password:  r.String(FieldPassword),
		Token:     r.String(FieldToken),
		CredsFile: r.String(FieldCredsFile),
		NkeyFile:  r.String(FieldNkeyFile),
		TLS:       r.TLSToggled(FieldTLS),
	}
	if err := r.Err(); err != nil {
		return jsproto.ConnConfig{}, err
	}
	if err := c.Validate(); err != nil {
		return jsproto.ConnConfig{}, err
	}
	return c, nil
}

// ParseConnAt reads the object field name of ObjectField. ok is false when
// its url is unset or empty (so `url: ${NATS_URL:}` can turn NATS off); any
// other field set without a url is an error. Errors name the object
// ("field nats: …").
func ParseConnAt(conf *service.ParsedConfig, name string) (c jsproto.ConnConfig, ok bool, err error) {
	block := conf.Namespace(name)
	r := confread.New(block)
	url := ""
	if block.Contains(FieldURL) {
		url = r.String(FieldURL)
	}
	if url == "" {
		set := r.String(FieldUser) + r.String(FieldPassword) + r.String(FieldToken) + r.String(FieldCredsFile) + r.String(FieldNkeyFile)
		if err := r.Err(); err != nil {
			return c, false, fmt.Errorf("field %s: %w", name, err)
		}
		if set != "" {
			return c, false, fmt.Errorf("field %s.%s: must be set with the other %s fields", name, FieldURL, name)
		}
		return c, false, nil
	}
	if c, err = ParseConn(block); err != nil {
		// "field password: …" becomes "field nats.password: …".
		if rest, ok := strings.CutPrefix(err.Error(), "field "); ok {
			return c, false, fmt.Errorf("field %s.%s", name, rest)
		}
		return c, false, fmt.Errorf("field %s: %w", name, err)
	}
	return c, true, nil
}
