package jwtrotor

import (
	"testing"
	"time"
)

// clock reads the schedule on this node; after a held forward step it says
// so, with a warning, and clock/accept takes the wall clock's time once.
func TestClockPaths(t *testing.T) {
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
