// Package natsconf declares the NATS connection fields that pg_flo_jetstream
// and pg_flo_worker share and parses them into a jsproto.ConnConfig, so both
// components document, accept and validate the same settings.
//
// It is adapter support: it imports Benthos' public/service, so engine
// packages do not use it; they take the jsproto.ConnConfig it returns.
package natsconf

import (
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
		Example("nats://localhost:4222")
}

// AuthFields returns the authentication fields (user and password, token or
// credentials file, at most one of them) and the TLS settings, in the order
// the components list them after their own fields.
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
		service.NewTLSToggledField(FieldTLS),
	}
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
