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
		{name: "tls", yaml: "tls:\n  enabled: true\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL}, tls: true},
		{name: "tls off", yaml: "tls:\n  enabled: false\n  skip_cert_verify: true\n", want: jsproto.ConnConfig{URL: natsconf.DefaultURL}},
		{name: "empty url", yaml: "url: ''\n", err: "url: must not be empty"},
		{name: "two auth methods", yaml: "user: u\ntoken: t\n", err: "mutually exclusive"},
		{name: "password alone", yaml: "password: p\n", err: "password: set user too"},
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

// The password and token are secrets, so Benthos scrubs them from printed
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
	want := map[string]bool{"url": false, "user": false, "password": true, "token": true, "creds_file": false, "tls": false}
	if !reflect.DeepEqual(secret, want) {
		t.Fatalf("secret fields %v, want %v", secret, want)
	}
}
