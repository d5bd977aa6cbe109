package jsproto

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnConfig is what pgflo's components need to reach NATS.
type ConnConfig struct {
	// URL is one NATS URL or several separated by commas.
	URL string
	// Name identifies the connection in the server's monitoring.
	Name string

	// At most one way to authenticate: User and Password, Token, CredsFile
	// (a JWT + NKey credentials file) or NkeyFile (a file holding an NKey
	// user seed).
	User      string
	Password  string
	Token     string
	CredsFile string
	NkeyFile  string
	// TLS, when not nil, makes the connection use TLS with this config.
	TLS *tls.Config

	// Event callbacks, typically logging; each may be nil.
	OnDisconnect func(err error)
	OnReconnect  func(url string)
	OnClosed     func()
}

// Validate reports conflicting authentication settings, naming the fields as
// the components spell them.
func (c ConnConfig) Validate() error {
	if c.URL == "" {
		return errors.New("field url: must not be empty")
	}
	n := 0
	if c.User != "" || c.Password != "" {
		n++
	}
	if c.Token != "" {
		n++
	}
	if c.CredsFile != "" {
		n++
	}
	if c.NkeyFile != "" {
		n++
	}
	if n > 1 {
		return errors.New("user/password, token, creds_file and nkey_file are mutually exclusive: set one way to authenticate")
	}
	if c.Password != "" && c.User == "" {
		return errors.New("field password: set user too")
	}
	return nil
}

// Connect dials NATS. Once connected, the client reconnects forever (one
// second apart), as pg_flo's does: a NATS restart must not stop a pipeline.
// The first connection is not retried here; callers (Benthos' Connect loop)
// retry with back-off and report the error.
func Connect(c ConnConfig) (*nats.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name(c.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
	}
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NkeyFile != "":
		// The seed is read here, once: a missing or malformed file fails
		// at once, naming the field, not at every reconnect.
		opt, err := nats.NkeyOptionFromSeed(c.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey_file %s: %w", c.NkeyFile, err)
		}
		opts = append(opts, opt)
	}
	if c.TLS != nil {
		opts = append(opts, nats.Secure(c.TLS))
	}
	if c.OnDisconnect != nil {
		opts = append(opts, nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { c.OnDisconnect(err) }))
	}
	if c.OnReconnect != nil {
		// Not ConnectedUrlRedacted: it keeps a token given as the URL's
		// user name.
		opts = append(opts, nats.ReconnectHandler(func(nc *nats.Conn) { c.OnReconnect(RedactURL(nc.ConnectedUrl())) }))
	}
	if c.OnClosed != nil {
		opts = append(opts, nats.ClosedHandler(func(*nats.Conn) { c.OnClosed() }))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", RedactURL(c.URL), err)
	}
	return nc, nil
}

// Drain drains nc, so messages in flight (publishes, acks) complete, and
// waits within ctx until it is closed; when ctx ends first it closes nc at
// once. A connection that is already closed is not an error, so components can
// call it from an idempotent Close.
func Drain(ctx context.Context, nc *nats.Conn) error {
	if err := nc.Drain(); err != nil {
		nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("drain nats connection: %w", err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !nc.IsClosed() {
		select {
		case <-ctx.Done():
			nc.Close()
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// RedactURL hides credentials embedded in (comma-separated) URLs, for logs
// and error messages: nats://user:secret@host:4222 becomes
// nats://redacted@host:4222. An entry that does not parse as a URL but holds
// an '@' is replaced whole, as it may still hold a password.
func RedactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, raw := range parts {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			if strings.Contains(raw, "@") {
				parts[i] = "(unparsable url)"
			}
			continue
		}
		if u.User == nil {
			continue
		}
		u.User = url.User("redacted")
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// HasURLCredentials reports whether one of the (comma-separated) URLs
// embeds a user or a password.
func HasURLCredentials(urls string) bool {
	return RedactURL(urls) != urls
}

// TLSFromFiles is the client TLS config of PEM files: caFile (empty: the
// system's roots) verifies the server, certFile and keyFile (both or
// neither) are the client's certificate. It serves command lines; the
// components take Benthos' tls field instead.
func TLSFromFiles(caFile, certFile, keyFile string) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("a client certificate needs both its certificate and its key file")
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}
