package jwtrotor

import (
	"testing"
	"time"
)

// clock reads the schedule on this node; after a held forward step it says
// so, with a warning, and clock/accept takes the wall clock's time once.
func TestClockPaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.read("clock").Data
	if d["held_seconds"] != int64(0) || d["schedule_time"] != d["wall_time"] {
		t.Fatalf("not held: %v", d)
	}
	e.clock.Step(2 * time.Hour)
	resp := e.read("clock")
	if resp.Data["held_seconds"] != int64(2*3600-60) || len(resp.Warnings) == 0 || resp.Data["held_since"] == int64(0) {
		t.Fatalf("held: %v %v", resp.Data, resp.Warnings)
	}
	resp = e.mustWrite("clock/accept", nil)
	if resp.Data["accepted_seconds"] != int64(2*3600-60) || resp.Data["schedule_time"] != resp.Data["wall_time"] {
		t.Fatalf("accept: %v", resp.Data)
	}
	if resp = e.mustWrite("clock/accept", nil); resp.Data["accepted_seconds"] != int64(0) || len(resp.Warnings) == 0 {
		t.Fatalf("a second accept: %v %v", resp.Data, resp.Warnings)
	}
}

// An accepted time survives a restart after the wall clock is put back: the
// schedule never returns to a time before one it may have signed at.
func TestClockAcceptIsStored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.read("clock")
	e.clock.Step(2 * time.Hour)
	// The accept is the first request to see the step: it accepts it.
	resp := e.mustWrite("clock/accept", nil)
	if resp.Data["accepted_seconds"] != int64(2*3600-60) {
		t.Fatalf("accept right after the step: %v %v", resp.Data, resp.Warnings)
	}
	accepted := resp.Data["schedule_time"].(int64)
	e.clock.Step(-2 * time.Hour)
	n := e.restart()
	if got := n.read("clock").Data["schedule_time"].(int64); got != accepted {
		t.Fatalf("after a restart with the clock put back, the schedule is at %d; the accepted time was %d", got, accepted)
	}
}
