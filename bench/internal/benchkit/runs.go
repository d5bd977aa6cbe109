package benchkit

import (
	"context"
	"fmt"
	"strings"
)

// NATSRuns is what a benchmark measured in each of its runs against each
// NATS setup.
type NATSRuns struct {
	Modes []string
	// Reports are the runs' reports, in the order measured.
	Reports strings.Builder
	// Ratios are pgflo's ratios to the run's anchor, per setup, run by run.
	Ratios map[string][]float64
}

// MeasureNATSRuns calls once, runs times for every setup of modes, the runs
// interleaved (run 1 against each setup, then run 2, …) so that a busy spell
// of the machine touches every setup alike. once measures one run against
// one setup and returns its report and pgflo's ratio to its anchor.
func MeasureNATSRuns(ctx context.Context, runs int, modes []string, once func(ctx context.Context, mode string) (report string, ratio float64, err error)) (*NATSRuns, error) {
	r := &NATSRuns{Modes: modes, Ratios: make(map[string][]float64)}
	for i := range runs {
		for _, mode := range modes {
			Say("run %d of %d, NATS %s", i+1, runs, mode)
			report, ratio, err := once(ctx, mode)
			if err != nil {
				return nil, fmt.Errorf("run %d, NATS %s: %w", i+1, mode, err)
			}
			fmt.Fprintf(&r.Reports, "### Run %d, `--nats %s`\n\n%s\n", i+1, mode, report)
			r.Ratios[mode] = append(r.Ratios[mode], ratio)
		}
	}
	return r, nil
}

// Summary is a table of every run's ratio per setup, their minimum and
// median; what names the ratio ("pgflo end to end × pg_recvlogical").
func (r *NATSRuns) Summary(what string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| NATS | %s, every run | minimum | median |\n|---|---|---:|---:|\n", what)
	for _, mode := range r.Modes {
		rs := r.Ratios[mode]
		each := make([]string, len(rs))
		for i, x := range rs {
			each[i] = fmt.Sprintf("%.2f×", x)
		}
		lo, med := MinMedian(rs)
		fmt.Fprintf(&b, "| `%s` | %s | %.2f× | %.2f× |\n", mode, strings.Join(each, ", "), lo, med)
	}
	return b.String()
}

// Publish prints the report of every run, headed by title, about (what was
// measured) and the summary of what (Summary), and also writes it to out
// unless out is empty.
func (r *NATSRuns) Publish(title, about, what, out string) error {
	report := fmt.Sprintf("## %s\n\n%s; each run against its own anchors:\n\n%s\n%s", title, about, r.Summary(what), r.Reports.String())
	fmt.Print(report)
	if out == "" {
		return nil
	}
	if err := WriteReport(out, report); err != nil {
		return err
	}
	Say("wrote %s", out)
	return nil
}
