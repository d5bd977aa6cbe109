package jsproto_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/pgflo/pgflo/internal/jsproto"
	"github.com/pgflo/pgflo/internal/testenv"
)

func TestDrain(t *testing.T) {
	ns := testenv.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, err := jsproto.Connect(jsproto.ConnConfig{URL: ns.URL()})
	if err != nil {
		t.Fatal(err)
	}
	if err := jsproto.Drain(ctx, nc); err != nil {
		t.Fatalf("drain: %v", err)
	}
	if !nc.IsClosed() {
		t.Fatal("connection still open after drain")
	}
	// Draining again, as a second Close does, is not an error.
	if err := jsproto.Drain(ctx, nc); err != nil {
		t.Fatalf("drain of a closed connection: %v", err)
	}
}

// NKey authentication with a seed file (nkey_file): the right seed
// connects; another user's seed is refused with the server's
// authorization violation; a missing file fails before dialling, naming
// the field.
func TestConnectNkeyFile(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := user.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.StartNATS(t, testenv.WithServerOptions(func(o *server.Options) {
		o.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}))
	dir := t.TempDir()
	seedFile := func(kp nkeys.KeyPair, name string) string {
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	nc, err := jsproto.Connect(jsproto.ConnConfig{URL: ns.URL(), NkeyFile: seedFile(user, "user.nk")})
	if err != nil {
		t.Fatalf("connect with the user's seed: %v", err)
	}
	nc.Close()

	other, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	_, err = jsproto.Connect(jsproto.ConnConfig{URL: ns.URL(), NkeyFile: seedFile(other, "other.nk")})
	if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), "connect to nats "+ns.URL()) {
		t.Fatalf("connect with another seed: %v, want an authorization violation naming the server", err)
	}

	_, err = jsproto.Connect(jsproto.ConnConfig{URL: ns.URL(), NkeyFile: filepath.Join(dir, "absent.nk")})
	if err == nil || !strings.Contains(err.Error(), "nkey_file "+filepath.Join(dir, "absent.nk")) {
		t.Fatalf("connect with a missing seed file: %v, want an error naming nkey_file", err)
	}
}

// A wrong password embedded in the URL is refused with an error that names
// the server without the password.
func TestConnectWrongPasswordRedacted(t *testing.T) {
	ns := testenv.StartNATS(t, testenv.WithServerOptions(func(o *server.Options) {
		o.Users = []*server.User{{Username: "bob", Password: "right-pw"}}
	}))
	url := fmt.Sprintf("nats://bob:wr0ng-pw@127.0.0.1:%d", ns.Port())
	_, err := jsproto.Connect(jsproto.ConnConfig{URL: url})
	if !errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "wr0ng-pw") ||
		!strings.Contains(err.Error(), fmt.Sprintf("nats://redacted@127.0.0.1:%d", ns.Port())) {
		t.Fatalf("connect with a wrong password in the URL: %v, want an authorization violation naming the redacted URL", err)
	}
	nc, err := jsproto.Connect(jsproto.ConnConfig{URL: ns.URL(), User: "bob", Password: "right-pw"})
	if err != nil {
		t.Fatalf("connect with the right password: %v", err)
	}
	nc.Close()
}
