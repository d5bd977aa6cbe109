package tests

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// metricValue finds, in the Prometheus exposition, the sample whose name and
// labels match pattern.
func metricValue(metrics, pattern string) (float64, bool) {
	m := regexp.MustCompile(`(?m)^` + pattern + ` ([-+0-9.eE]+)$`).FindStringSubmatch(metrics)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[len(m)-1], 64)
	return v, err == nil
}

// readyStatus is the HTTP status of the process's /ready at base (0 while it
// does not answer).
func readyStatus(base string) int {
	resp, err := http.Get(base + "/ready")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// ownerGauge is pg_flo_replicator_owner of the replicator at base, -1 while
// it is not exposed.
func ownerGauge(t *testing.T, base string) float64 {
	v, ok := metricValue(scrape(t, base+"/metrics"), `pg_flo_replicator_owner(\{.*\})?`)
	if !ok {
		return -1
	}
	return v
}

// The replicator's Prometheus metrics show the events by table and op, and the lag
// gauge falls to 0 once the output caught up; /ready answers while the
// replication connection is up.
func TestReplicatorMetrics(t *testing.T) {
	dsn := pg.NewDatabase(t)
	testenv.Exec(t, dsn, "CREATE TABLE items (id int PRIMARY KEY, v text)")
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := newPipeline(t, dsn, "metrics")
	p.replicatorHTTP = fmt.Sprintf("127.0.0.1:%d", port)
	p.replicatorExtra = "    status_interval: 200ms"
	p.startReplicator()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	testenv.Eventually(t, 10*time.Second, "/ready answering 200", func() bool {
		resp, err := http.Get(base + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	// Changes written with no worker still reach JetStream: the replicator
	// catches up and its lag returns to 0.
	writeRange(t, dsn, 1, 3000, 100)
	testenv.Exec(t, dsn, "UPDATE items SET v = 'x' WHERE id <= 10")
	var metrics string
	defer func() {
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(metrics, "\n") {
				if strings.HasPrefix(l, "pg_flo_") {
					lines = append(lines, l)
				}
			}
			t.Logf("pg_flo metrics:\n%s", strings.Join(lines, "\n"))
		}
	}()
	testenv.Eventually(t, 30*time.Second, "3000 inserts and 10 updates counted, then the lag back at 0", func() bool {
		metrics = scrape(t, base+"/metrics")
		inserts, _ := metricValue(metrics, `pg_flo_events_total\{.*op="INSERT".*table="public.items".*\}`)
		updates, _ := metricValue(metrics, `pg_flo_events_total\{.*op="UPDATE".*table="public.items".*\}`)
		lag, ok := metricValue(metrics, `pg_flo_replication_lag_bytes(\{.*\})?`)
		return inserts == 3000 && updates == 10 && ok && lag == 0
	})
}

// A second replicator of a group stands by: its /ready answers 503 and
// pg_flo_replicator_owner is 0 while the first owns the group; once the
// first stops it takes over, and both turn. With nats.url the group's lease
// decides; without, the slot PostgreSQL lets one connection stream from.
func TestStandbyReplicatorIsNotReady(t *testing.T) {
	t.Run("lease", func(t *testing.T) { standbyIsNotReady(t, true) })
	t.Run("slot only", func(t *testing.T) { standbyIsNotReady(t, false) })
}

func standbyIsNotReady(t *testing.T, lease bool) {
	p := itemsPipeline(t, "standby", lease)
	dsn := p.dsn
	var bases []string
	for range 2 {
		port, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		bases = append(bases, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	p.replicatorHTTP = strings.TrimPrefix(bases[0], "http://")
	p.startReplicator()
	p.replicatorHTTP = strings.TrimPrefix(bases[1], "http://")
	standby := testenv.StartProcess(t, "replicator-b", p.bin, "run", p.replicatorConfig())

	testenv.Eventually(t, 30*time.Second, "the second replicator standing by", func() bool {
		return strings.Contains(standby.Log(), "Standing by") && ownerGauge(t, bases[1]) == 0
	})
	if n := strings.Count(standby.Log(), "Standing by"); n != 1 || strings.Contains(standby.Log(), "level=error") {
		t.Fatalf("the standby said %d times that it stands by, or logged errors:\n%s", n, infoLines(standby.Log()))
	}
	if code := readyStatus(bases[1]); code != http.StatusServiceUnavailable {
		t.Fatalf("standby's /ready answered %d", code)
	}
	if code, v := readyStatus(bases[0]), ownerGauge(t, bases[0]); code != http.StatusOK || v != 1 {
		t.Fatalf("owner's /ready %d, pg_flo_replicator_owner %v", code, v)
	}
	if err := p.replicator.Stop(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the standby owning the group and ready", func() bool {
		return readyStatus(bases[1]) == http.StatusOK && ownerGauge(t, bases[1]) == 1
	})
	// It streams: a change reaches the stream.
	testenv.Exec(t, dsn, "INSERT INTO items VALUES (1, 'after the hand-over')")
	p.startWorker("")
	testenv.Eventually(t, 30*time.Second, "the change delivered", func() bool { return len(p.events()) == 1 })
}
