package chaos

import (
	"reflect"
	"testing"
)

// A seed is a schedule: the same seed, count and servers give the same
// faults, so a failing campaign can be replayed.
func TestScheduleIsAFunctionOfTheSeed(t *testing.T) {
	a, b := Schedule(42, 60, 3), Schedule(42, 60, 3)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two schedules of seed 42 differ")
	}
	if reflect.DeepEqual(a, Schedule(43, 60, 3)) {
		t.Fatal("seeds 42 and 43 gave the same schedule")
	}
}

// A schedule holds exactly the faults asked for; two faults at once act on
// different things, and NATS faults name a server that exists.
func TestScheduleFaults(t *testing.T) {
	for _, servers := range []int{1, 3} {
		for seed := int64(1); seed <= 50; seed++ {
			steps := Schedule(seed, 57, servers)
			n := 0
			for _, s := range steps {
				n += len(s.Faults)
				if len(s.Faults) == 2 && s.Faults[0].subject() == s.Faults[1].subject() {
					t.Fatalf("seed %d: two faults at once on %s", seed, s.Faults[0].subject())
				}
				for _, f := range s.Faults {
					if f.Hold <= 0 {
						t.Fatalf("seed %d: %s lasts %v", seed, f, f.Hold)
					}
					if (f.Kind == KillNATS || f.Kind == StopNATS) && (f.Node < 0 || f.Node >= servers) {
						t.Fatalf("seed %d: %s with %d servers", seed, f, servers)
					}
					if f.Node != AllNodes && servers == 1 && f.Link != "" {
						t.Fatalf("seed %d: %s cuts one server of one", seed, f)
					}
				}
			}
			if n != 57 {
				t.Fatalf("seed %d: %d faults, want 57", seed, n)
			}
		}
	}
}
