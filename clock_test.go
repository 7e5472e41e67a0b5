package jwtrotor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// Tests of the schedule clock (clock.go, docs/invariants.md "Time") through
// the clock endpoints, the log and the metrics, step by step against the
// numbers the policy gives.

// clockView is one read of the clock endpoint, relative to testStart.
type clockView struct {
	wall, schedule, held, heldSince int64
}

func (e *testEnv) clockView() clockView {
	e.t.Helper()
	d := e.read("clock").Data
	v := clockView{wall: d["wall_time"].(int64) - testStart.Unix(), schedule: d["schedule_time"].(int64) - testStart.Unix(), held: d["held_seconds"].(int64)}
	if since := d["held_since"].(int64); since != 0 {
		v.heldSince = since - testStart.Unix()
	}
	return v
}

// clockLog is a log line about the clock: its message and numbers.
type clockLog struct {
	msg              string
	step, held, jump int64
}

// clockLogs returns the log lines about the clock since the last call.
func (e *testEnv) clockLogs(seen *int) []clockLog {
	e.t.Helper()
	var lines []string
	if text := strings.TrimSpace(e.logs.String()); text != "" {
		lines = strings.Split(text, "\n")
	}
	var out []clockLog
	for _, line := range lines[min(*seen, len(lines)):] {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		msg, _ := m["@message"].(string)
		if !strings.Contains(msg, "clock") {
			continue
		}
		l := clockLog{msg: msg}
		if f, ok := m["step_seconds"].(float64); ok {
			l.step = int64(f)
		}
		if f, ok := m["held_seconds"].(float64); ok {
			l.held = int64(f)
		}
		if f, ok := m["jump_seconds"].(float64); ok {
			l.jump = int64(f)
		}
		out = append(out, l)
	}
	*seen = len(lines)
	return out
}

// TestClockHoldsForwardSteps walks the clock policy: steps up to 60 s in
// all are taken, what goes past 60 s holds the schedule by the excess (the
// step and the held total are logged and counted), real time moves a held
// schedule at its own pace, further steps add to the hold, a step back ends
// it, and the leftover within the tolerance counts towards the next one.
func TestClockHoldsForwardSteps(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := 0
	want := func(what string, v clockView) {
		t.Helper()
		if got := e.clockView(); got != v {
			t.Fatalf("%s: clock %+v, want %+v", what, got, v)
		}
	}
	wantLogs := func(what string, want ...clockLog) {
		t.Helper()
		got := e.clockLogs(&seen)
		if len(got) != len(want) {
			t.Fatalf("%s: clock log lines %+v, want %+v", what, got, want)
		}
		for i := range want {
			if !strings.Contains(got[i].msg, want[i].msg) || got[i].step != want[i].step || got[i].held != want[i].held || got[i].jump != want[i].jump {
				t.Fatalf("%s: clock log line %+v, want %+v", what, got[i], want[i])
			}
		}
	}
	held := func() float64 {
		t.Helper()
		return readMetric(t, e, "jwt_rotor_clock_steps_held_total")
	}

	want("start", clockView{0, 0, 0, 0})
	// Exactly the tolerance: taken as it comes.
	e.clock.Step(60 * time.Second)
	want("a 60 s step", clockView{60, 60, 0, 0})
	wantLogs("a 60 s step")
	// Real time passing is never a step.
	e.clock.Advance(40 * time.Second)
	want("40 s of real time", clockView{100, 100, 0, 0})
	// One second more in total holds the schedule by that second.
	e.clock.Step(time.Second)
	want("a total of 61 s of steps", clockView{101, 100, 1, 101})
	wantLogs("a total of 61 s of steps", clockLog{msg: "stepped forward", step: 1, held: 1})
	if n := held(); n != 1 {
		t.Fatalf("jwt_rotor_clock_steps_held_total = %v, want 1", n)
	}
	e.clock.Advance(90 * time.Second)
	want("90 s of real time while held", clockView{191, 190, 1, 101})
	wantLogs("90 s of real time while held")
	// A small step while held adds to the hold, quietly; a large one is
	// logged and counted again with the new total.
	e.clock.Step(10 * time.Second)
	want("a 10 s step while held", clockView{201, 190, 11, 101})
	wantLogs("a 10 s step while held")
	// Exactly the tolerance in one step, while held: still quiet.
	e.clock.Step(60 * time.Second)
	want("a 60 s step while held", clockView{261, 190, 71, 101})
	wantLogs("a 60 s step while held")
	e.clock.Step(70 * time.Second)
	want("a 70 s step while held", clockView{331, 190, 141, 101})
	wantLogs("a 70 s step while held", clockLog{msg: "stepped forward", step: 70, held: 141})
	if n := held(); n != 2 {
		t.Fatalf("jwt_rotor_clock_steps_held_total = %v, want 2", n)
	}
	// Stepping back to exactly the tolerance ends the hold.
	e.clock.Step(-141 * time.Second)
	want("a step back to 60 s ahead", clockView{190, 190, 0, 0})
	wantLogs("a step back to 60 s ahead", clockLog{msg: "stepped back", step: -141})
	// The 60 s left count: one more second holds again.
	e.clock.Step(time.Second)
	want("one more second", clockView{191, 190, 1, 191})
	wantLogs("one more second", clockLog{msg: "stepped forward", step: 1, held: 1})
	// A step back past the high-water mark: the schedule waits for the
	// wall clock.
	e.clock.Step(-161 * time.Second)
	want("a step back past the schedule", clockView{30, 190, 0, 0})
	wantLogs("a step back past the schedule", clockLog{msg: "stepped back", step: -161})
	e.clock.Advance(159 * time.Second)
	want("a second before the wall clock catches up", clockView{189, 190, 0, 0})
	// Caught up: the step back is explained, so a later 61 s step holds
	// by its excess over the tolerance, not by nothing (61 s less what the
	// step back took).
	e.clock.Advance(time.Second)
	want("caught up", clockView{190, 190, 0, 0})
	e.clock.Step(61 * time.Second)
	want("a 61 s step after catching up", clockView{251, 250, 1, 251})
	wantLogs("after catching up", clockLog{msg: "stepped forward", step: 61, held: 1})
}

// TestClockCorrectedStepBackIsNoStep: a step back, then the forward step
// that corrects it before the wall clock has caught up with the schedule,
// leaves nothing held: the unexplained movements cancel out, and the
// correction of a bad step is never itself taken for one.
func TestClockCorrectedStepBackIsNoStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := 0
	e.clock.Advance(100 * time.Second)
	if v := e.clockView(); v != (clockView{100, 100, 0, 0}) {
		t.Fatalf("after 100 s: %+v", v)
	}
	e.clock.Step(-100 * time.Second)
	if v := e.clockView(); v != (clockView{0, 100, 0, 0}) {
		t.Fatalf("after a 100 s step back: %+v, want the schedule kept at 100", v)
	}
	e.clock.Step(100 * time.Second)
	if v := e.clockView(); v != (clockView{100, 100, 0, 0}) {
		t.Fatalf("after the correcting step forward: %+v, want nothing held", v)
	}
	if logs := e.clockLogs(&seen); len(logs) != 0 {
		t.Fatalf("a corrected step back logged %+v", logs)
	}
	if n := readMetric(t, e, "jwt_rotor_clock_steps_held_total"); n != 0 {
		t.Fatalf("jwt_rotor_clock_steps_held_total = %v, want 0", n)
	}
}

// TestClockAccept: clock/accept takes the wall clock's time and reports how
// far the schedule jumped; with nothing held it changes nothing and says so.
func TestClockAccept(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := 0
	resp := e.mustWrite("clock/accept", nil)
	if resp.Data["accepted_seconds"] != int64(0) || len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "not held") {
		t.Fatalf("accept with nothing held: %v %v", resp.Data, resp.Warnings)
	}
	if logs := e.clockLogs(&seen); len(logs) != 0 {
		t.Fatalf("accept with nothing held logged %+v", logs)
	}
	e.clock.Step(5 * time.Minute)
	// The first 60 s are taken, the rest held.
	if v := e.clockView(); v.held != 240 || v.schedule != 60 {
		t.Fatalf("after a 5 min step: %+v", v)
	}
	e.clockLogs(&seen)
	resp = e.mustWrite("clock/accept", nil)
	if resp.Data["accepted_seconds"] != int64(240) || resp.Data["schedule_time"] != testStart.Unix()+300 || resp.Data["held_seconds"] != int64(0) || len(resp.Warnings) != 0 {
		t.Fatalf("accept after a 5 min step: %v %v", resp.Data, resp.Warnings)
	}
	logs := e.clockLogs(&seen)
	if len(logs) != 1 || !strings.Contains(logs[0].msg, "accepted") || logs[0].jump != 240 {
		t.Fatalf("accept logged %+v, want one line with jump_seconds 240", logs)
	}
	if v := e.clockView(); v != (clockView{300, 300, 0, 0}) {
		t.Fatalf("after accept: %+v", v)
	}
}

// TestClockRestartResumesFromStoredMark: a restart takes the wall clock's
// time, but never one before the high-water mark stored with the last ring
// write, so a clock that stepped back across a restart cannot rewind the
// schedule; tokens then carry the wall clock, never a time past the
// schedule.
func TestClockRestartResumesFromStoredMark(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	e.clock.Advance(10 * time.Minute)
	e.mustWrite("keys/k/rotate", nil) // stores the high-water mark (+600)
	e.clock.Step(-5 * time.Minute)
	after := e.restart()
	if v := after.clockView(); v != (clockView{300, 600, 0, 0}) {
		t.Fatalf("restart with the clock 5 min back: %+v, want the schedule at the stored mark", v)
	}
	resp := after.mustWrite("sign/r", nil)
	if resp.Data["issued_at"] != testStart.Unix()+300 {
		t.Fatalf("token issued at %v, want the wall clock %d", resp.Data["issued_at"], testStart.Unix()+300)
	}
	// A large forward step across a restart is an outage, not a step: the
	// new process takes the wall clock's time.
	e.clock.Step(2 * time.Hour)
	again := after.restart()
	if v := again.clockView(); v != (clockView{7500, 7500, 0, 0}) {
		t.Fatalf("restart after a 2 h step: %+v, want the wall clock", v)
	}
}

// readMetric reads one metric, summed over its series, from the metrics
// endpoint.
func readMetric(t *testing.T, e *testEnv, name string) float64 {
	t.Helper()
	total := 0.0
	series, _ := e.read("metrics").Data[name].([]map[string]any)
	for _, s := range series {
		total += s["value"].(float64)
	}
	return total
}

// The schedule clock follows the wall clock, never goes back, holds a
// forward step that real time does not explain (over 60 s in total), ends
// the hold when the wall clock is corrected or the time is accepted, and
// never stamps a token ahead of the schedule.
func TestScheduleClock(t *testing.T) {
	t.Parallel()
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
	if r.HeldSeconds != 1 || c.heldSinceUnix() == 0 || len(events) != 1 || events[0] != "held" {
		t.Fatalf("held %d, since %d, events %v", r.HeldSeconds, c.heldSinceUnix(), events)
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
	if held != 3600 || r.Schedule != t0+85+3600 || r.HeldSeconds != 0 || events[len(events)-1] != "accepted" {
		t.Fatalf("accept: held %d, schedule %d, %v", held, r.Schedule-t0, events)
	}
	// A high-water mark from storage bounds the schedule from below.
	c.observe(t0 + 10000)
	at(t0+10000, "after observing a stored high-water mark")
}
