package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/urfave/cli/v2"
)

// runApp runs an app holding cmd with args and returns what it printed.
func runApp(t *testing.T, cmd *cli.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{Name: "pgflo", Writer: &out, ErrWriter: &out, Commands: []*cli.Command{cmd}}
	err := app.Run(append([]string{"pgflo"}, args...))
	return out.String(), err
}

func TestVersionPrintsPgFloForm(t *testing.T) {
	out, err := runApp(t, VersionCommand(Build{Version: "v1.2.3", Commit: "abc1234", Date: "2026-11-26"}), "version")
	if err != nil {
		t.Fatal(err)
	}
	if want := "pgflo v1.2.3 (commit: abc1234, built: 2026-11-26)\n"; out != want {
		t.Errorf("version printed %q, want %q", out, want)
	}
}

// Bad flag combinations fail before any connection is made (the DSNs point
// at a closed port) and name the flag.
func TestCleanupFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--dsn", "postgres://u@127.0.0.1:1/db"}, "--group: invalid group name"},
		{[]string{"--group", "a.b", "--nats-url", "nats://127.0.0.1:1"}, "--group: invalid group name"},
		{[]string{"--group", "g"}, ErrNothingToClean.Error()},
		{[]string{"--group", "g", "--dsn", "postgres://u@127.0.0.1:1/db", "--user", "u"}, "--dsn and --user both name the source"},
		{[]string{"--group", "g", "--host", "127.0.0.1", "--user", "u"}, "--dbname is required"},
		{[]string{"--group", "g", "extra"}, `unexpected argument "extra"`},
		{[]string{"--group", "g", "--nats-url", "nats://127.0.0.1:1", "--nats-tls-cert", "c.pem"}, "a client certificate needs both its certificate and its key file"},
		{[]string{"--group", "g", "--nats-url", "nats://127.0.0.1:1", "--nats-tls-ca", "/nonexistent/ca.pem"}, "--nats-tls-ca, --nats-tls-cert, --nats-tls-key: read CA file"},
	} {
		out, err := runApp(t, CleanupCommand(), append([]string{"cleanup"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("cleanup %v: error %v, want one containing %q (output %q)", c.args, err, c.want, out)
		}
	}
}

func TestResolveDefaultsToPgFloNames(t *testing.T) {
	o := CleanupOptions{Group: "my-group", NATSURL: "nats://x"}
	if err := o.resolve(); err != nil {
		t.Fatal(err)
	}
	want := CleanupOptions{
		Group: "my-group", NATSURL: "nats://x",
		Slot: "pg_flo_my_group_publication", Publication: "pg_flo_my_group_publication",
		Stream: "pgflo_my-group_stream", Consumer: "pgflo_my-group_consumer", Bucket: "pg_flo_state_my-group",
		ReleaseTimeout: o.ReleaseTimeout,
	}
	if o != want {
		t.Errorf("resolved %+v, want %+v", o, want)
	}
	if err := (&CleanupOptions{Group: "g"}).resolve(); !errors.Is(err, ErrNothingToClean) {
		t.Errorf("no place: %v, want ErrNothingToClean", err)
	}
}

// pg_flo's connection flags become a keyword/value DSN that pgx parses
// back to the same values, whatever the password holds.
func TestKeywordDSNRoundTrips(t *testing.T) {
	password := `it's a \ "secret" = x`
	dsn := keywordDSN(map[string]string{"host": "/var/run/postgresql", "port": "5433", "dbname": "my db", "user": "o'neil", "password": password})
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatalf("parse %s: %v", dsn, err)
	}
	if cfg.Host != "/var/run/postgresql" || cfg.Port != 5433 || cfg.Database != "my db" || cfg.User != "o'neil" || cfg.Password != password {
		t.Errorf("%s parsed as host %q port %d db %q user %q password %q", dsn, cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password)
	}
}
