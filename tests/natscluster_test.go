package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pgflo/pgflo/internal/testenv"
)

// Three `pgflo nats` processes form a JetStream cluster — two configured by
// flags, one by a nats-server config file whose port a flag overrides — and
// an R3 stream on it keeps taking messages when its leader is killed.
func TestPgfloNATSFormsACluster(t *testing.T) {
	bin := testenv.Binary(t)
	var client, route [3]int
	for i := range 3 {
		var err error
		if client[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
		if route[i], err = testenv.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	routes := fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d,nats://127.0.0.1:%d", route[0], route[1], route[2])
	procs := map[string]*testenv.Process{}
	for i := range 2 {
		name := "n" + strconv.Itoa(i+1)
		procs[name] = testenv.StartProcess(t, "pgflo-nats-"+name, bin, "nats",
			"--port", strconv.Itoa(client[i]), "--store-dir", t.TempDir(),
			"--server-name", name, "--cluster-name", "pgflo",
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", route[i]), "--routes", routes)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "n3.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`server_name: n3
port: 1 # overridden by --port
jetstream { store_dir: %q }
cluster {
  name: pgflo
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, filepath.Join(dir, "store"), route[2], strings.ReplaceAll(routes, ",", ", "))), 0o600); err != nil {
		t.Fatal(err)
	}
	procs["n3"] = testenv.StartProcess(t, "pgflo-nats-n3", bin, "nats", "--config", conf, "--port", strconv.Itoa(client[2]))

	urls := fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d,nats://127.0.0.1:%d", client[0], client[1], client[2])
	for name, p := range procs {
		testenv.Eventually(t, 30*time.Second, name+" listening", func() bool {
			return strings.Contains(p.Log(), "NATS JetStream listening on")
		})
	}
	if log := procs["n3"].Log(); !strings.Contains(log, filepath.Join(dir, "store")) {
		t.Fatalf("n3 does not use the config file's store dir:\n%s", log)
	}
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stream jetstream.Stream
	testenv.Eventually(t, 60*time.Second, "an R3 stream created", func() bool {
		reqCtx, reqCancel := context.WithTimeout(ctx, 2*time.Second)
		defer reqCancel()
		stream, err = js.CreateStream(reqCtx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Storage: jetstream.FileStorage, Replicas: 3})
		return err == nil
	})
	publish := func(from, to int) {
		t.Helper()
		for i := from; i <= to; i++ {
			testenv.Eventually(t, 30*time.Second, fmt.Sprintf("message %d stored", i), func() bool {
				reqCtx, reqCancel := context.WithTimeout(ctx, 2*time.Second)
				defer reqCancel()
				_, err := js.Publish(reqCtx, "r3.m", []byte(strconv.Itoa(i)), jetstream.WithMsgID(strconv.Itoa(i)))
				return err == nil
			})
		}
	}
	publish(1, 50)
	var info *jetstream.StreamInfo
	testenv.Eventually(t, 30*time.Second, "three current replicas", func() bool {
		if info, err = stream.Info(ctx); err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range info.Cluster.Replicas {
			if !r.Current {
				return false
			}
		}
		return true
	})
	leader := info.Cluster.Leader
	procs[leader].Kill()
	publish(51, 100)
	testenv.Eventually(t, 30*time.Second, "a new leader holding all 100 messages", func() bool {
		info, err := stream.Info(ctx)
		return err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != leader && info.State.Msgs == 100
	})
}
