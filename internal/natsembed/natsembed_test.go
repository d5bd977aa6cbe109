package natsembed

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/urfave/cli/v2"
)

func TestStartPersistsAcrossRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := t.TempDir()

	s, err := Start(Options{Port: -1, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	url := s.ClientURL()
	_, portStr, err := net.SplitHostPort(strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatalf("parse client url %q: %v", url, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 {
		t.Fatalf("client url %q has no real port", url)
	}

	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	if got := nc.MaxPayload(); got != int64(DefaultMaxPayload) {
		t.Errorf("max payload = %d, want %d", got, DefaultMaxPayload)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     "TEST",
		Subjects: []string{"test.>"},
		Storage:  jetstream.FileStorage,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "test.a", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "hello" {
		t.Fatalf("got %q, want hello", msg.Data)
	}
	nc.Close()
	s.Shutdown()
	s.WaitForShutdown()

	// Same port and store dir: the stream and its message must survive.
	s2, err := Start(Options{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		s2.Shutdown()
		s2.WaitForShutdown()
	}()
	if s2.ClientURL() != url {
		t.Errorf("restarted url = %s, want %s", s2.ClientURL(), url)
	}
	nc2, err := nats.Connect(s2.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	stream2, err := js2.Stream(ctx, "TEST")
	if err != nil {
		t.Fatalf("stream lost across restart: %v", err)
	}
	msg, err = stream2.GetMsg(ctx, 1)
	if err != nil {
		t.Fatalf("message lost across restart: %v", err)
	}
	if string(msg.Data) != "hello" || msg.Subject != "test.a" {
		t.Fatalf("after restart got %s %q, want test.a hello", msg.Subject, msg.Data)
	}
}

func TestStartPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	start := time.Now()
	s, err := Start(Options{Port: port, StoreDir: t.TempDir()})
	if err == nil {
		s.Shutdown()
		t.Fatal("expected an error for a port in use")
	}
	if !strings.Contains(err.Error(), "listening") && !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("error does not explain the cause: %v", err)
	}
	t.Logf("port in use: %v", err)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v to report a port in use", d)
	}
}

func TestCommandRunsUntilCancelled(t *testing.T) {
	pr, pw := io.Pipe()
	app := &cli.App{
		Name:     "pgflo",
		Writer:   pw,
		Commands: []*cli.Command{Command()},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- app.RunContext(ctx, []string{"pgflo", "nats", "--port", "-1", "--store-dir", t.TempDir()})
		pw.Close()
	}()

	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no output from nats command: %v (run error: %v)", err, <-done)
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain the rest of the output
	url := strings.Fields(strings.TrimPrefix(line, "NATS JetStream listening on "))[0]
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect to %s from %q: %v", url, line, err)
	}
	nc.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nats command did not stop after cancellation")
	}
}

// A config file gives what the options leave unset; options that are set
// override it; the defaults fill in what neither gives.
func TestServerOptionsConfigFile(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(conf, []byte(`server_name: from-file
port: 4333
max_payload: 2MB
jetstream { store_dir: "/from/file", sync_interval: always }
cluster { name: c, listen: "127.0.0.1:6333", routes: ["nats://127.0.0.1:6333"] }
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := serverOptions(Options{ConfigFile: conf, Port: 4444})
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerName != "from-file" || o.Port != 4444 || o.MaxPayload != 2<<20 || o.StoreDir != "/from/file" || !o.SyncAlways ||
		o.Cluster.Name != "c" || o.Cluster.Port != 6333 || len(o.Routes) != 1 || o.Host != "127.0.0.1" || !o.JetStream {
		t.Fatalf("options from file and flags: %+v", o)
	}
	o, err = serverOptions(Options{ConfigFile: conf, ServerName: "n1", ClusterListen: "0.0.0.0:7000", Routes: []string{"nats://a:7000", "nats://b:7000"}, StoreDir: "/flag"})
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerName != "n1" || o.Cluster.Host != "0.0.0.0" || o.Cluster.Port != 7000 || len(o.Routes) != 2 || o.StoreDir != "/flag" {
		t.Fatalf("overrides not applied: %+v", o)
	}
	o, err = serverOptions(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxPayload != DefaultMaxPayload || o.Host != "127.0.0.1" || o.Cluster.Port != 0 {
		t.Fatalf("defaults: %+v", o)
	}
	for _, bad := range []Options{
		{Routes: []string{"nats://a:7000"}},
		{ClusterListen: "7000"},
		{ClusterListen: "127.0.0.1:7000", Routes: []string{"a:7000"}},
		{ConfigFile: filepath.Join(dir, "missing.conf")},
	} {
		if _, err := serverOptions(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// --sync-interval sets nats-server's sync_interval: "always" or a duration;
// unset, the server's default (2 minutes) stands.
func TestCommandSyncInterval(t *testing.T) {
	for _, tc := range []struct {
		arg      string
		always   bool
		interval time.Duration
		err      string
	}{
		{arg: ""},
		{arg: "always", always: true},
		{arg: "ALWAYS", always: true},
		{arg: "10s", interval: 10 * time.Second},
		{arg: "soon", err: `--sync-interval must be "always" or a positive duration`},
		{arg: "-1s", err: `--sync-interval must be "always" or a positive duration`},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			cmd := Command()
			var opts Options
			var optsErr error
			cmd.Action = func(c *cli.Context) error {
				opts, optsErr = commandOptions(c)
				return nil
			}
			args := []string{"pgflo", "nats"}
			if tc.arg != "" {
				args = append(args, "--sync-interval", tc.arg)
			}
			if err := (&cli.App{Commands: []*cli.Command{cmd}}).Run(args); err != nil {
				t.Fatal(err)
			}
			if tc.err != "" {
				if optsErr == nil || !strings.Contains(optsErr.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", optsErr, tc.err)
				}
				return
			}
			if optsErr != nil {
				t.Fatal(optsErr)
			}
			o, err := serverOptions(opts)
			if err != nil {
				t.Fatal(err)
			}
			if o.SyncAlways != tc.always || o.SyncInterval != tc.interval {
				t.Fatalf("sync always %v, interval %v; want %v, %v", o.SyncAlways, o.SyncInterval, tc.always, tc.interval)
			}
		})
	}
}
