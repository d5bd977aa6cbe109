package benchkit

import (
	"reflect"
	"testing"
)

// A --nats list names known setups, each once.
func TestParseNATSModes(t *testing.T) {
	got, err := ParseNATSModes(DefaultNATSModes)
	if err != nil || !reflect.DeepEqual(got, []string{NATSR1, NATSStock}) {
		t.Fatalf("default %q: %v, %v", DefaultNATSModes, got, err)
	}
	if got, err := ParseNATSModes(" r3-sync , stock"); err != nil || !reflect.DeepEqual(got, []string{NATSR3Sync, NATSStock}) {
		t.Fatalf("spaced list: %v, %v", got, err)
	}
	for _, bad := range []string{"", "r1,", "r2", "stock,stock"} {
		if got, err := ParseNATSModes(bad); err == nil {
			t.Errorf("%q gave %v, want an error", bad, got)
		}
	}
}

// The minimum and median of every run's ratio, odd and even counts.
func TestMinMedian(t *testing.T) {
	for _, tt := range []struct {
		xs       []float64
		min, med float64
	}{
		{[]float64{0.9, 0.5, 1.4}, 0.5, 0.9},
		{[]float64{1.2, 0.6, 1.0, 0.8}, 0.6, 0.9},
		{nil, 0, 0},
	} {
		if lo, med := MinMedian(tt.xs); lo != tt.min || med != tt.med {
			t.Errorf("MinMedian(%v) = %v, %v; want %v, %v", tt.xs, lo, med, tt.min, tt.med)
		}
	}
}
