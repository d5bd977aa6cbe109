package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/replication"
)

// CleanupOptions name a replication group's objects and where they live.
// Names left empty get the names pgflo (and pg_flo) give them.
type CleanupOptions struct {
	// DSN is the source database holding the slot, the publication and the
	// DDL capture; empty leaves PostgreSQL alone.
	DSN string
	// NATSURL is the NATS server holding the group's stream, consumer and
	// state bucket; empty leaves NATS alone.
	NATSURL string
	// NATSAuth, when not nil, holds the authentication (User and Password,
	// Token, CredsFile or NkeyFile) and TLS of the connection to NATSURL;
	// its URL and Name are ignored.
	NATSAuth *jsproto.ConnConfig
	Group    string

	// Slot and Publication default to replication.PgFloName(Group).
	Slot, Publication string
	// Stream, Consumer and Bucket default to jsproto's names for Group.
	Stream, Consumer, Bucket string

	// Yes drops the objects; without it Cleanup only reports what it would
	// drop.
	Yes bool
	// ReleaseTimeout bounds the wait for a terminated walsender to release
	// the slot (default 10 s).
	ReleaseTimeout time.Duration
}

// ErrNothingToClean means CleanupOptions name neither a database nor a NATS
// server.
var ErrNothingToClean = errors.New("nothing to clean up: give --dsn (or --host/--dbname/…) for the source PostgreSQL, --nats-url for NATS, or both")

// resolve validates o and fills in the default names.
func (o *CleanupOptions) resolve() error {
	if err := jsproto.ValidateGroup(o.Group); err != nil {
		return fmt.Errorf("--group: %w", err)
	}
	if o.DSN == "" && o.NATSURL == "" {
		return ErrNothingToClean
	}
	def := func(v *string, name string) {
		if *v == "" {
			*v = name
		}
	}
	def(&o.Slot, replication.PgFloName(o.Group))
	def(&o.Publication, replication.PgFloName(o.Group))
	def(&o.Stream, jsproto.StreamName(o.Group))
	def(&o.Consumer, jsproto.ConsumerName(o.Group))
	def(&o.Bucket, jsproto.StateBucket(o.Group))
	if o.ReleaseTimeout <= 0 {
		o.ReleaseTimeout = 10 * time.Second
	}
	return nil
}

// target is one object Cleanup may drop.
type target struct {
	// what names the object for people: "publication pg_flo_users_publication".
	what string
	// detail says what is known about it (size, who uses it); may be empty.
	detail string
	exists bool
	// keep, when not empty, says why an existing object is left alone.
	keep string
	// drop removes the object; its note (may be empty) says what else it did.
	drop func(ctx context.Context) (note string, err error)
}

func (t target) String() string {
	if t.detail == "" {
		return t.what
	}
	return t.what + " (" + t.detail + ")"
}

// place is where a set of targets lives: a database or a NATS server.
type place struct {
	name    string
	targets []target
	close   func()
}

// Cleanup finds the group's objects and writes one line per object to out.
// With o.Yes it drops those that exist, in dependency order, and keeps
// going after a failure, returning every error; without it nothing changes.
// Both places are inspected before anything is dropped, so an unreachable
// server stops the cleanup before it starts. Running it again is harmless:
// what is gone is reported as not found.
func Cleanup(ctx context.Context, o CleanupOptions, out io.Writer) error {
	if err := o.resolve(); err != nil {
		return err
	}
	var places []place
	defer func() {
		for _, p := range places {
			p.close()
		}
	}()
	if o.DSN != "" {
		p, err := postgresTargets(ctx, o)
		if err != nil {
			return err
		}
		places = append(places, p)
	}
	if o.NATSURL != "" {
		p, err := natsTargets(ctx, o)
		if err != nil {
			return err
		}
		places = append(places, p)
	}

	var errs []error
	found, dropped := 0, 0
	for _, p := range places {
		fmt.Fprintf(out, "%s:\n", p.name)
		for _, t := range p.targets {
			switch {
			case !t.exists:
				fmt.Fprintf(out, "  not found   %s\n", t)
			case t.keep != "":
				fmt.Fprintf(out, "  kept        %s: %s\n", t, t.keep)
			case !o.Yes:
				found++
				fmt.Fprintf(out, "  would drop  %s\n", t)
			default:
				found++
				note, err := t.drop(ctx)
				if err != nil {
					errs = append(errs, fmt.Errorf("drop %s: %w", t.what, err))
					fmt.Fprintf(out, "  FAILED      %s: %v\n", t, err)
					continue
				}
				dropped++
				if note != "" {
					note = "; " + note
				}
				fmt.Fprintf(out, "  dropped     %s%s\n", t, note)
			}
		}
	}
	switch {
	case found == 0:
		fmt.Fprintf(out, "Nothing to drop: group %q has no objects left.\n", o.Group)
	case !o.Yes:
		fmt.Fprintf(out, "Nothing was dropped (dry run). Stop the group's replicator and workers, then run again with --yes to drop the %s above: a running replicator recreates its slot and publication.\n", plural(found, "object"))
	case dropped < found:
		fmt.Fprintf(out, "Dropped %d of %s of group %q; see the failures above.\n", dropped, plural(found, "object"), o.Group)
	default:
		fmt.Fprintf(out, "Dropped %s of group %q.\n", plural(dropped, "object"), o.Group)
	}
	return errors.Join(errs...)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

// Flag names of `pgflo cleanup`.
const (
	flagDSN         = "dsn"
	flagHost        = "host"
	flagPort        = "port"
	flagDBName      = "dbname"
	flagUser        = "user"
	flagPassword    = "password"
	flagSchema      = "schema"
	flagGroup       = "group"
	flagSSLMode     = "sslmode"
	flagSSLRootCert = "sslrootcert"
	flagSSLCert     = "sslcert"
	flagSSLKey      = "sslkey"
	flagNATSURL     = "nats-url"
	flagSlot        = "slot"
	flagPublication = "publication"
	flagStreamName  = "stream-name"
	flagConsumer    = "consumer"
	flagYes         = "yes"

	// The NATS connection's authentication and TLS, named as the pg_flo
	// commands name them (package config).
	flagNATSUser      = "nats-user"
	flagNATSPassword  = "nats-password"
	flagNATSToken     = "nats-token"
	flagNATSCredsFile = "nats-creds-file"
	flagNATSNkeyFile  = "nats-nkey-file"
	flagNATSTLSCA     = "nats-tls-ca"
	flagNATSTLSCert   = "nats-tls-cert"
	flagNATSTLSKey    = "nats-tls-key"
)

// CleanupCommand returns `pgflo cleanup`, which removes what a replication
// group leaves behind: pg_flo, like pgflo, never drops its replication slot,
// publication, DDL capture, stream or state on its own, and a forgotten slot
// makes the source keep WAL until its disk fills.
func CleanupCommand() *cli.Command {
	return &cli.Command{
		Name:      "cleanup",
		Usage:     "Drop a replication group's slot, publication, DDL capture, JetStream stream, consumer and state",
		ArgsUsage: " ",
		Description: "Lists the group's objects on the source PostgreSQL (--dsn, or pg_flo's --host/--port/\n" +
			"--dbname/--user/--password) and on NATS (--nats-url), and with --yes drops them: the\n" +
			"replication slot (terminating the walsender that holds it), the publication, the DDL\n" +
			"capture event trigger and function (and the pgflo schema once it is empty), the\n" +
			"JetStream consumer and stream, the dead-letter stream and the state bucket. Without --yes\n" +
			"nothing changes.\n" +
			"Stop the group's replicator and workers first: a running replicator recreates its\n" +
			"slot and publication. Objects already gone are reported as not found, so it can be\n" +
			"run again safely. Give only --nats-url to reset the stream but keep the slot (when\n" +
			"moving a drained pg_flo group to pgflo, for instance).\n\n" +
			"Example:\n" +
			"  pgflo cleanup --dsn postgres://postgres@localhost:5432/app --group users \\\n" +
			"    --nats-url nats://localhost:4222 --yes",
		Flags: append(groupFlags(),
			&cli.StringFlag{Name: flagPublication, Usage: "publication, when not the group's default (pg_flo_<group>_publication)"},
			&cli.StringFlag{Name: flagStreamName, Usage: "JetStream stream, when not the group's default (pgflo_<group>_stream)"},
			&cli.StringFlag{Name: flagConsumer, Usage: "durable consumer, when not the group's default (pgflo_<group>_consumer)"},
			&cli.BoolFlag{Name: flagYes, Aliases: []string{"y"}, Usage: "drop the objects (without it, only list what would be dropped)"},
		),
		Action: runCleanup,
	}
}

// groupFlags are the flags naming a group and where its objects live,
// shared by `pgflo cleanup` and `pgflo resync`: the source (--dsn or pg_flo's
// connection flags and PG_FLO_* variables), NATS and its authentication, and
// the slot.
func groupFlags() []cli.Flag {
	flags := []cli.Flag{
		&cli.StringFlag{Name: flagDSN, EnvVars: []string{"PGFLO_SOURCE_DSN"}, Usage: "source database connection string (URL or key=value); its password is never printed"},
		&cli.StringFlag{Name: flagHost, EnvVars: []string{"PG_FLO_HOST"}, Usage: "source PostgreSQL host (pg_flo style, instead of --dsn)"},
		&cli.IntFlag{Name: flagPort, EnvVars: []string{"PG_FLO_PORT"}, Value: 5432, Usage: "source PostgreSQL port (pg_flo style)"},
		&cli.StringFlag{Name: flagDBName, EnvVars: []string{"PG_FLO_DBNAME"}, Usage: "source database (pg_flo style)"},
		&cli.StringFlag{Name: flagUser, EnvVars: []string{"PG_FLO_USER"}, Usage: "source user (pg_flo style)"},
		&cli.StringFlag{Name: flagPassword, EnvVars: []string{"PG_FLO_PASSWORD"}, Usage: "source password (pg_flo style)"},
		&cli.StringFlag{Name: flagSchema, EnvVars: []string{"PG_FLO_SCHEMA"}, Usage: "accepted for pg_flo command-line compatibility; unused (a group's objects do not depend on it)"},
		&cli.StringFlag{Name: flagGroup, EnvVars: []string{"PGFLO_GROUP", "PG_FLO_GROUP"}, Usage: "the replication group (required)"},
		&cli.StringFlag{Name: flagSSLMode, EnvVars: []string{"PG_FLO_SSLMODE"}, Usage: "source TLS mode with pg_flo-style flags: disable, allow, prefer, require, verify-ca or verify-full (unset: PGSSLMODE, else prefer)"},
		&cli.StringFlag{Name: flagSSLRootCert, EnvVars: []string{"PG_FLO_SSLROOTCERT"}, Usage: "CA certificate file (PEM) verifying the source server (verify-ca, verify-full)"},
		&cli.StringFlag{Name: flagSSLCert, EnvVars: []string{"PG_FLO_SSLCERT"}, Usage: "client certificate file (PEM) presented to the source server"},
		&cli.StringFlag{Name: flagSSLKey, EnvVars: []string{"PG_FLO_SSLKEY"}, Usage: "private key file (PEM) of --sslcert"},
	}
	flags = append(flags, natsFlags()...)
	return append(flags, &cli.StringFlag{Name: flagSlot, Usage: "replication slot, when not the group's default (pg_flo_<group>_publication)"})
}

// natsFlags are the NATS connection's flags, with pg_flo's environment
// variables: --nats-url, its authentication and TLS (natsAuth reads them).
func natsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: flagNATSURL, EnvVars: []string{"PGFLO_NATS_URL", "PG_FLO_NATS_URL"}, Usage: "NATS server holding the group's stream and state"},
		&cli.StringFlag{Name: flagNATSUser, EnvVars: []string{"PG_FLO_NATS_USER"}, Usage: "NATS user (user/password authentication)"},
		&cli.StringFlag{Name: flagNATSPassword, EnvVars: []string{"PG_FLO_NATS_PASSWORD"}, Usage: "NATS password"},
		&cli.StringFlag{Name: flagNATSToken, EnvVars: []string{"PG_FLO_NATS_TOKEN"}, Usage: "NATS token (token authentication)"},
		&cli.StringFlag{Name: flagNATSCredsFile, EnvVars: []string{"PG_FLO_NATS_CREDS_FILE"}, Usage: "NATS credentials file (JWT and NKey seed)"},
		&cli.StringFlag{Name: flagNATSNkeyFile, EnvVars: []string{"PG_FLO_NATS_NKEY_FILE"}, Usage: "file holding a NATS NKey user seed"},
		&cli.StringFlag{Name: flagNATSTLSCA, EnvVars: []string{"PG_FLO_NATS_TLS_CA"}, Usage: "CA certificate file (PEM) verifying the NATS server; enables TLS"},
		&cli.StringFlag{Name: flagNATSTLSCert, EnvVars: []string{"PG_FLO_NATS_TLS_CERT"}, Usage: "client certificate file (PEM) for NATS TLS; enables TLS"},
		&cli.StringFlag{Name: flagNATSTLSKey, EnvVars: []string{"PG_FLO_NATS_TLS_KEY"}, Usage: "private key file (PEM) of --nats-tls-cert"},
	}
}

// runCleanup is the action of CleanupCommand.
func runCleanup(c *cli.Context) error {
	dsn, auth, err := readGroupFlags(c)
	if err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	o := CleanupOptions{
		DSN:         dsn,
		NATSURL:     c.String(flagNATSURL),
		NATSAuth:    auth,
		Group:       c.String(flagGroup),
		Slot:        c.String(flagSlot),
		Publication: c.String(flagPublication),
		Stream:      c.String(flagStreamName),
		Consumer:    c.String(flagConsumer),
		Yes:         c.Bool(flagYes),
	}
	ctx, stop := commandContext(c)
	defer stop()
	if err := Cleanup(ctx, o, c.App.Writer); err != nil {
		return fmt.Errorf("cleanup: %w", err)
	}
	return nil
}

// commandContext is the context of a command's work: the command's own,
// ended by SIGINT or SIGTERM.
func commandContext(c *cli.Context) (context.Context, context.CancelFunc) {
	parent := c.Context
	if parent == nil {
		parent = context.Background()
	}
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

// natsAuth is the NATS connection's authentication and TLS flags; nil
// when none is given.
// readGroupFlags checks that a command of groupFlags got no arguments and
// reads its source DSN and NATS authentication.
func readGroupFlags(c *cli.Context) (dsn string, auth *jsproto.ConnConfig, err error) {
	if c.Args().Present() {
		return "", nil, fmt.Errorf("unexpected argument %q (every setting is a flag)", c.Args().First())
	}
	if dsn, err = sourceDSN(c); err != nil {
		return "", nil, err
	}
	auth, err = natsAuth(c)
	return dsn, auth, err
}

func natsAuth(c *cli.Context) (*jsproto.ConnConfig, error) {
	auth := &jsproto.ConnConfig{
		User: c.String(flagNATSUser), Password: c.String(flagNATSPassword), Token: c.String(flagNATSToken),
		CredsFile: c.String(flagNATSCredsFile), NkeyFile: c.String(flagNATSNkeyFile),
	}
	ca, cert, key := c.String(flagNATSTLSCA), c.String(flagNATSTLSCert), c.String(flagNATSTLSKey)
	if ca != "" || cert != "" || key != "" {
		tls, err := jsproto.TLSFromFiles(ca, cert, key)
		if err != nil {
			return nil, fmt.Errorf("--%s, --%s, --%s: %w", flagNATSTLSCA, flagNATSTLSCert, flagNATSTLSKey, err)
		}
		auth.TLS = tls
	}
	if auth.User+auth.Password+auth.Token+auth.CredsFile+auth.NkeyFile == "" && auth.TLS == nil {
		return nil, nil
	}
	return auth, nil
}

// sourceDSN is --dsn, or the keyword/value connection string of pg_flo's
// --host, --port, --dbname, --user and --password (and the --ssl… flags);
// giving both is an error.
func sourceDSN(c *cli.Context) (string, error) {
	pgFloFlags := []string{flagHost, flagDBName, flagUser, flagPassword}
	var given []string
	for _, name := range pgFloFlags {
		if c.String(name) != "" {
			given = append(given, "--"+name)
		}
	}
	if dsn := c.String(flagDSN); dsn != "" {
		for _, name := range []string{flagSSLMode, flagSSLRootCert, flagSSLCert, flagSSLKey} {
			if c.String(name) != "" {
				return "", fmt.Errorf("--%s goes with pg_flo-style connection flags: with --dsn, write %s=… in the DSN", name, name)
			}
		}
		if len(given) > 0 {
			return "", fmt.Errorf("--dsn and %s both name the source: give one", strings.Join(given, ", "))
		}
		return dsn, nil
	}
	if len(given) == 0 {
		return "", nil
	}
	for _, name := range []string{flagHost, flagDBName, flagUser} {
		if c.String(name) == "" {
			return "", fmt.Errorf("--%s is required with pg_flo-style connection flags (or give --dsn)", name)
		}
	}
	return keywordDSN(map[string]string{
		"host":        c.String(flagHost),
		"port":        strconv.Itoa(c.Int(flagPort)),
		"dbname":      c.String(flagDBName),
		"user":        c.String(flagUser),
		"password":    c.String(flagPassword),
		"sslmode":     c.String(flagSSLMode),
		"sslrootcert": c.String(flagSSLRootCert),
		"sslcert":     c.String(flagSSLCert),
		"sslkey":      c.String(flagSSLKey),
	}), nil
}

// keywordDSN builds a keyword/value connection string, quoting every value
// (a host may be a socket directory, a password anything).
func keywordDSN(params map[string]string) string {
	var parts []string
	for _, key := range []string{"host", "port", "dbname", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey"} {
		if v := params[key]; v != "" {
			v = strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `'`, `\'`)
			parts = append(parts, key+"='"+v+"'")
		}
	}
	return strings.Join(parts, " ")
}
