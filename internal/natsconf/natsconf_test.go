package natsconf_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/natsconf"
)

func testSpec() *service.ConfigSpec {
	return service.NewConfigSpec().
		Field(natsconf.URLField()).
		Fields(natsconf.AuthFields()...)
}

func TestParseConn(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       jsproto.ConnConfig // TLS compared as on/off
		tls        bool
		err        string
	}{
		{name: "defaults", yaml: "{}", want: jsproto.ConnConfig{URL: natsconf.DefaultURL}},
		{name: "user", yaml: "url: nats://a:4222,nats://b:4222\nuser: u\npassword: p\n",
			want: jsproto.ConnConfig{URL: "nats://a:4222,nats://b:4222", User: "u", Password: "p"}},
		{name: "token", yaml: "token: t\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL, Token: "t"}},
		{name: "creds file", yaml: "creds_file: ./nats.creds\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL, CredsFile: "./nats.creds"}},
		{name: "nkey file", yaml: "nkey_file: ./user.nk\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL, NkeyFile: "./user.nk"}},
		{name: "tls", yaml: "tls:\n  enabled: true\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL}, tls: true},
		{name: "tls off", yaml: "tls:\n  enabled: false\n  skip_cert_verify: true\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL}},
		{name: "empty url", yaml: "url: ''\n", err: "field url: must not be empty"},
		{name: "two auth methods", yaml: "user: u\ntoken: t\n", err: "mutually exclusive"},
		{name: "creds and nkey", yaml: "creds_file: a.creds\nnkey_file: u.nk\n", err: "user/password, token, creds_file and nkey_file are mutually exclusive"},
		{name: "password alone", yaml: "password: p\n", err: "field password: set user too"},
		{name: "bad tls", yaml: "tls:\n  enabled: true\n  root_cas_file: /nonexistent/ca.pem\n", err: "field tls: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := testSpec().ParseYAML(tt.yaml, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := natsconf.ParseConn(conf)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got.TLS != nil) != tt.tls {
				t.Errorf("TLS config %v, want TLS on = %v", got.TLS, tt.tls)
			}
			got.TLS = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsed %+v, want %+v", got, tt.want)
			}
		})
	}
}

// The password, the token and the url (which may carry user:password@ in
// any of its servers) are secrets, so Benthos scrubs them from printed
// configs; the other fields are not.
func TestAuthFieldsSecrets(t *testing.T) {
	env := service.NewEmptyEnvironment()
	err := env.RegisterBatchInput("natsconf_test", testSpec(),
		func(*service.ParsedConfig, *service.Resources) (service.BatchInput, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	var secret map[string]bool
	env.WalkInputs(func(_ string, view *service.ConfigView) {
		raw, err := view.FormatJSON()
		if err != nil {
			t.Fatal(err)
		}
		var spec struct {
			Config struct {
				Children []struct {
					Name   string `json:"name"`
					Secret bool   `json:"is_secret"`
				} `json:"children"`
			} `json:"config"`
		}
		if err := json.Unmarshal(raw, &spec); err != nil {
			t.Fatal(err)
		}
		secret = map[string]bool{}
		for _, f := range spec.Config.Children {
			secret[f.Name] = f.Secret
		}
	})
	want := map[string]bool{"url": true, "user": false, "password": true, "token": true, "creds_file": false, "nkey_file": false, "tls": false}
	if !reflect.DeepEqual(secret, want) {
		t.Fatalf("secret fields %v, want %v", secret, want)
	}
}

// The connection block nested in an object field (pg_flo_replicator's
// `nats`): absent, present with defaults, and its errors naming the object.
func TestParseConnAt(t *testing.T) {
	spec := service.NewConfigSpec().Field(natsconf.ObjectField("nats", "The NATS connection.", "NATS server URL."))
	for _, tt := range []struct {
		name, yaml string
		present    bool
		want       jsproto.ConnConfig
		err        string
	}{
		{name: "absent", yaml: "{}"},
		{name: "empty", yaml: "nats: {}\n"},
		{name: "url only", yaml: "nats:\n  url: nats://a:4222\n", present: true, want: jsproto.ConnConfig{URL: "nats://a:4222"}},
		{name: "user", yaml: "nats:\n  url: nats://a:4222\n  user: u\n  password: p\n", present: true, want: jsproto.ConnConfig{URL: "nats://a:4222", User: "u", Password: "p"}},
		{name: "nkey", yaml: "nats:\n  url: nats://a:4222\n  nkey_file: u.nk\n", present: true, want: jsproto.ConnConfig{URL: "nats://a:4222", NkeyFile: "u.nk"}},
		{name: "no url", yaml: "nats:\n  user: u\n  password: p\n", err: "field nats.url: must be set with the other nats fields"},
		{name: "empty url", yaml: "nats:\n  url: ''\n"},
		{name: "two auth methods", yaml: "nats:\n  url: nats://a:4222\n  token: t\n  nkey_file: u.nk\n", err: "field nats: user/password, token, creds_file and nkey_file are mutually exclusive"},
		{name: "bad tls", yaml: "nats:\n  url: nats://a:4222\n  tls:\n    enabled: true\n    root_cas_file: /nonexistent/ca.pem\n", err: "field nats.tls: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conf, err := spec.ParseYAML(tt.yaml, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, ok, err := natsconf.ParseConnAt(conf, "nats")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.present {
				t.Fatalf("ok = %v, want %v", ok, tt.present)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsed %+v, want %+v", got, tt.want)
			}
		})
	}
}
