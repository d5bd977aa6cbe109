package confread_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redpanda-data/benthos/v4/public/service"

	"github.com/pgflo/pgflo/internal/confread"
)

func testSpec() *service.ConfigSpec {
	return service.NewConfigSpec().Fields(
		service.NewStringField("name").Default("n"),
		service.NewIntField("count").Default(3),
		service.NewBoolField("on").Default(true),
		service.NewDurationField("wait").Default("2s"),
		service.NewStringListField("list").Default([]any{}),
		service.NewTLSToggledField("tls"),
	)
}

func parse(t *testing.T, yaml string) *confread.Reader {
	t.Helper()
	conf, err := testSpec().ParseYAML(yaml, nil)
	if err != nil {
		t.Fatalf("parse %q: %v", yaml, err)
	}
	return confread.New(conf)
}

// values is one read of every field of testSpec.
type values struct {
	Name  string
	Count int
	On    bool
	Wait  time.Duration
	List  []string
	TLS   bool
}

func readAll(r *confread.Reader) values {
	return values{
		Name:  r.String("name"),
		Count: r.Int("count"),
		On:    r.Bool("on"),
		Wait:  r.Duration("wait"),
		List:  r.StringList("list"),
		TLS:   r.TLSToggled("tls") != nil,
	}
}

func TestReaderReadsEveryKind(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       values
	}{
		{"defaults", "{}", values{Name: "n", Count: 3, On: true, Wait: 2 * time.Second, List: []string{}}},
		{"set", "name: x\ncount: 7\non: false\nwait: 5ms\nlist: [a, b]\ntls:\n  enabled: true\n",
			values{Name: "x", Count: 7, Wait: 5 * time.Millisecond, List: []string{"a", "b"}, TLS: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := parse(t, tt.yaml)
			got := readAll(r)
			if err := r.Err(); err != nil {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("read %+v, want %+v", got, tt.want)
			}
		})
	}
}

// After a failed read every later read gives the zero value, and Err names
// the first field that failed, not a later one.
func TestReaderKeepsFirstError(t *testing.T) {
	r := parse(t, "wait: soon\ntls:\n  enabled: true\n  root_cas_file: /nonexistent/ca.pem\n")
	got := readAll(r)
	if want := (values{Name: "n", Count: 3, On: true}); !reflect.DeepEqual(got, want) {
		t.Errorf("read %+v, want %+v (zero values after the failure)", got, want)
	}
	err := r.Err()
	if err == nil || !strings.HasPrefix(err.Error(), "field wait: ") {
		t.Fatalf("err = %v, want one starting with %q", err, "field wait: ")
	}

	// The TLS field fails on its own too.
	r = parse(t, "tls:\n  enabled: true\n  root_cas_file: /nonexistent/ca.pem\n")
	if readAll(r); r.Err() == nil || !strings.HasPrefix(r.Err().Error(), "field tls: ") {
		t.Fatalf("err = %v, want one starting with %q", r.Err(), "field tls: ")
	}
}
