// Command demo runs pgflo's main job on throwaway servers, for a newcomer's
// first look (make demo): a PostgreSQL cluster with wal_level=logical, the
// embedded JetStream (`pgflo nats`), the replicator and the worker as two
// pgflo processes running resources/replicator.yaml and resources/worker.yaml,
// and a few inserts, updates and deletes shown arriving as change events. A
// second worker transforms the same stream (emails masked, minors filtered
// out, deletes not applied) into a target PostgreSQL database, and the demo
// prints source and target side by side.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgflo/pgflo/internal/testenv"
)

func main() {
	bin := flag.String("bin", "./pgflo", "path of the built pgflo binary")
	keep := flag.Bool("keep", false, "keep running (and printing changes) until Ctrl-C")
	flag.Parse()
	if err := run(*bin, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func say(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

func run(bin string, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("pgflo binary %s not found: run `make build` first", bin)
	}
	work, err := os.MkdirTemp("", "pgflo-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	say("starting a throwaway PostgreSQL cluster (wal_level=logical)")
	pg, err := testenv.StartPostgres()
	if err != nil {
		return fmt.Errorf("%w\n(the demo needs the PostgreSQL server binaries: on Debian/Ubuntu `sudo apt-get install -y postgresql`)", err)
	}
	defer pg.Stop()
	dsn := pg.AdminDSN()
	const schema = `CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, name text, age int)`
	if err := exec1(ctx, dsn, schema); err != nil {
		return err
	}
	if err := exec1(ctx, dsn, "CREATE DATABASE target"); err != nil {
		return err
	}
	targetDSN := pg.DSN("target")
	if err := exec1(ctx, targetDSN, schema); err != nil {
		return err
	}

	natsPort, httpA, httpB := freePort(), freePort(), freePort()
	natsURL := fmt.Sprintf("nats://127.0.0.1:%d", natsPort)
	output := filepath.Join(work, "changes.jsonl")
	env := []string{
		"PGFLO_SOURCE_DSN=" + dsn, "PGFLO_NATS_URL=" + natsURL, "PGFLO_GROUP=demo",
		"PGFLO_OUTPUT_FILE=" + output, "PGFLO_LOG_LEVEL=WARN",
	}
	say("starting the embedded JetStream: pgflo nats --port %d", natsPort)
	nats, err := start(ctx, work, "nats", env, bin, "nats", "--port", fmt.Sprint(natsPort), "--store-dir", filepath.Join(work, "nats"))
	if err != nil {
		return err
	}
	defer halt(nats)
	if err := waitTCP(ctx, natsPort); err != nil {
		return fmt.Errorf("nats did not start: %w (see %s)", err, filepath.Join(work, "nats.log"))
	}

	say("starting the replicator: pgflo run resources/replicator.yaml")
	rep, err := start(ctx, work, "replicator", append(env, fmt.Sprintf("PGFLO_HTTP_ADDRESS=127.0.0.1:%d", httpA)), bin, "run", "resources/replicator.yaml")
	if err != nil {
		return err
	}
	defer halt(rep)
	say("starting the worker: pgflo run resources/worker.yaml (change events go to %s)", output)
	wrk, err := start(ctx, work, "worker", append(env, fmt.Sprintf("PGFLO_HTTP_ADDRESS=127.0.0.1:%d", httpB)), bin, "run", "resources/worker.yaml")
	if err != nil {
		return err
	}
	defer halt(wrk)
	transformCfg := filepath.Join(work, "transform.yaml")
	if err := os.WriteFile(transformCfg, []byte(fmt.Sprintf(transformWorker, targetDSN)), 0o600); err != nil {
		return err
	}
	say("starting a second worker: mask emails, keep adults, skip deletes, apply to the target database (pg_flo_postgres)")
	tw, err := start(ctx, work, "transform-worker", append(env, fmt.Sprintf("PGFLO_HTTP_ADDRESS=127.0.0.1:%d", freePort())), bin, "run", transformCfg)
	if err != nil {
		return err
	}
	defer halt(tw)
	if err := waitSlot(ctx, dsn); err != nil {
		return fmt.Errorf("%w (replicator log: %s)", err, filepath.Join(work, "replicator.log"))
	}

	say("writing to the source: 5 inserts, 2 updates, 1 delete")
	for _, sql := range []string{
		`INSERT INTO users (email, name, age) VALUES ('ada@example.com','Ada',36), ('alan@example.com','Alan',41), ('grace@example.com','Grace',17), ('edsger@example.com','Edsger',72), ('barbara@example.com','Barbara',15)`,
		`UPDATE users SET age = age + 1 WHERE name IN ('Ada', 'Grace')`,
		`DELETE FROM users WHERE name = 'Edsger'`,
	} {
		if err := exec1(ctx, dsn, sql); err != nil {
			return err
		}
	}
	say("change events arriving through JetStream:")
	seen, err := follow(ctx, output, 8, keep)
	if err != nil {
		return fmt.Errorf("%w (logs in %s)", err, work)
	}
	if err := showTables(ctx, dsn, targetDSN); err != nil {
		return fmt.Errorf("%w (logs in %s)", err, work)
	}
	say("done: %d changes replicated from PostgreSQL through JetStream. Configs: resources/*.yaml", seen)
	return nil
}

// transformWorker is the second worker's config: its own durable consumer,
// so it reads every change too.
const transformWorker = `
http:
  address: ${PGFLO_HTTP_ADDRESS}
input:
  pg_flo_worker:
    url: ${PGFLO_NATS_URL}
    group: demo
    durable: pgflo_demo_target
pipeline:
  processors:
    - pg_flo_rules:
        rules:
          tables:
            users:
              - type: transform
                column: email
                parameters: { type: mask, mask_char: "*" }
              - type: filter
                column: age
                parameters: { operator: gte, value: 18 }
                operations: [INSERT, UPDATE]
    - pg_flo_route:
        routes:
          users:
            operations: [INSERT, UPDATE]
output:
  pg_flo_postgres:
    dsn: %q
    group: demo
logger:
  level: WARN
`

// showTables waits until the target holds the transformed rows, then prints
// source and target.
func showTables(ctx context.Context, source, target string) error {
	const query = "SELECT id, email, name, age FROM users ORDER BY id"
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, err := queryAll(ctx, target, query)
		if err == nil && len(rows) == 4 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the target did not get the transformed rows within 60s (has %d)", len(rows))
		}
		time.Sleep(300 * time.Millisecond)
	}
	for _, side := range []struct{ name, dsn string }{{"source", source}, {"target (emails masked, minors filtered, deletes skipped)", target}} {
		rows, err := queryAll(ctx, side.dsn, query)
		if err != nil {
			return err
		}
		say("%s users:", side.name)
		for _, r := range rows {
			fmt.Println("    " + strings.Join(r, "  "))
		}
	}
	return nil
}

func queryAll(ctx context.Context, dsn, sql string) ([][]string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, sql, pgx.QueryResultFormats{pgx.TextFormatCode})
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		var row []string
		for _, v := range rows.RawValues() {
			row = append(row, string(v))
		}
		out = append(out, row)
	}
	return out, rows.Err()
}

// follow prints the output file's events as they arrive, until want are seen
// (or, with keep, until interrupted).
func follow(ctx context.Context, path string, want int, keep bool) (int, error) {
	deadline := time.Now().Add(60 * time.Second)
	seen, offset := 0, int64(0)
	for keep || seen < want {
		if ctx.Err() != nil {
			return seen, nil
		}
		if !keep && time.Now().After(deadline) {
			return seen, fmt.Errorf("only %d of %d changes arrived within 60s", seen, want)
		}
		f, err := os.Open(path)
		if err == nil {
			_, _ = f.Seek(offset, 0)
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				offset += int64(len(sc.Bytes())) + 1
				seen++
				fmt.Println("    " + summarize(sc.Bytes()))
			}
			f.Close()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return seen, nil
}

func summarize(line []byte) string {
	var ev struct {
		Op    string            `json:"op"`
		Table string            `json:"table"`
		LSN   string            `json:"lsn"`
		New   map[string]any    `json:"new"`
		Old   map[string]string `json:"old"`
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return string(line)
	}
	row := ev.New
	if row == nil {
		row = map[string]any{}
		for k, v := range ev.Old {
			row[k] = v
		}
	}
	b, _ := json.Marshal(row)
	return fmt.Sprintf("%-6s %-6s lsn=%-10s %s", ev.Op, ev.Table, ev.LSN, b)
}

func exec1(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", strings.Fields(sql)[0], err)
	}
	return nil
}

func waitSlot(ctx context.Context, dsn string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			var active bool
			err = conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = 'pg_flo_demo_publication'`).Scan(&active)
			conn.Close(context.Background())
			if err == nil && active {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the replicator did not start streaming within 30s")
}

func start(ctx context.Context, dir, name string, env []string, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return cmd, nil
}

func halt(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func freePort() int {
	port, err := testenv.FreePort()
	if err != nil {
		panic(err)
	}
	return port
}

func waitTCP(ctx context.Context, port int) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("port %d not open", port)
}
