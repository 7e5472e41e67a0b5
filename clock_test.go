package jwtrotor

import (
	"testing"
	"time"
)

// The schedule clock follows the wall clock, never goes back, holds a
// forward step that real time does not explain (over 60 s in total), ends
// the hold when the wall clock is corrected or the time is accepted, and
// never stamps a token ahead of the schedule.
func TestScheduleClock(t *testing.T) {
	src := &fakeClock{now: testStart}
	c := newScheduleClock(src)
	var events []string
	c.notify = func(ev clockEvent) { events = append(events, ev.kind) }
	t0 := testStart.Unix()
	at := func(want int64, what string) reading {
		t.Helper()
		r := c.read()
		if r.Schedule != want {
			t.Fatalf("%s: schedule %d, want %d", what, r.Schedule-t0, want-t0)
		}
		if r.Token > r.Schedule {
			t.Fatalf("%s: token time %d ahead of the schedule %d", what, r.Token-t0, r.Schedule-t0)
		}
		return r
	}
	at(t0, "start")
	src.Advance(10 * time.Second)
	at(t0+10, "real time passing")

	// A step back: the schedule waits for the wall clock, tokens carry it.
	src.Advance(-30 * time.Second)
	if r := at(t0+10, "after a step back"); r.Token != t0-20 {
		t.Fatalf("token time %d, want the wall clock %d", r.Token-t0, -20)
	}
	src.Advance(40 * time.Second)
	at(t0+20, "caught up")

	// Steps within the tolerance are taken as they come, up to 60 s in all.
	src.Step(30 * time.Second)
	at(t0+50, "a 30 s step")
	src.Step(30 * time.Second)
	at(t0+80, "another 30 s step (60 s in all)")
	if len(events) != 0 {
		t.Fatalf("held within the tolerance: %v", events)
	}
	// One second more is held: what goes beyond the tolerance.
	src.Step(time.Second)
	r := at(t0+80, "held at 61 s")
	if r.Held != 1 || c.heldSinceUnix() == 0 || len(events) != 1 || events[0] != "held" {
		t.Fatalf("held %d, since %d, events %v", r.Held, c.heldSinceUnix(), events)
	}
	// A 48h step is held too; real time still moves the schedule.
	src.Step(48 * time.Hour)
	src.Advance(5 * time.Second)
	r = at(t0+85, "held 48h, 5 s of real time later")
	if r.Wall != t0+86+48*3600 {
		t.Fatalf("wall %d", r.Wall-t0)
	}
	// The wall clock is corrected: the hold ends by itself, and the 60 s
	// taken as they came stay taken.
	src.Step(-48 * time.Hour)
	src.Step(-time.Second)
	at(t0+85, "corrected")
	if events[len(events)-1] != "released" {
		t.Fatalf("events %v", events)
	}
	// Held again, then accepted: the schedule takes the wall clock's time.
	src.Step(time.Hour)
	at(t0+85, "held an hour")
	r, held := c.accept()
	if held != 3600 || r.Schedule != t0+85+3600 || r.Held != 0 || events[len(events)-1] != "accepted" {
		t.Fatalf("accept: held %d, schedule %d, %v", held, r.Schedule-t0, events)
	}
	// A high-water mark from storage bounds the schedule from below.
	c.observe(t0 + 10000)
	at(t0+10000, "after observing a stored high-water mark")
}
