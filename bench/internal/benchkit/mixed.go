package benchkit

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pgflo/pgflo/internal/testenv"
)

// StartNATS runs `pgflo nats` on a free port with its store in work (and
// the further flags extra) and waits until it accepts connections; it
// returns the process and its URL.
func StartNATS(work, bin string, extra ...string) (*Proc, string, error) {
	port, err := testenv.FreePort()
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"nats", "--port", strconv.Itoa(port), "--store-dir", filepath.Join(work, "nats-store")}, extra...)
	p, err := StartProc(work, "nats", bin, args...)
	if err != nil {
		return nil, "", err
	}
	if err := WaitTCP(p, port, 30*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", err
	}
	return p, fmt.Sprintf("nats://127.0.0.1:%d", port), nil
}

// Poll calls cond every interval until it reports true, fails, the context
// ends, or timeout passes; it returns the time from start until cond held.
func Poll(ctx context.Context, start time.Time, interval, timeout time.Duration, what string, cond func() (bool, error)) (time.Duration, error) {
	deadline := start.Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return time.Since(start), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: not done after %v", what, timeout)
		}
		time.Sleep(interval)
	}
}
