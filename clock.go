package jwtrotor

import (
	"sync"
	"time"
)

// The schedule clock. Key states follow the wall clock, to the second, with
// two guards against a clock that lies:
//
//   - Backward steps: the schedule never goes back. The latest time acted on
//     (the high-water mark) is persisted, so a restart after a step back
//     never derives state from an earlier time; the schedule waits for the
//     wall clock to catch up.
//   - Forward steps: inside a running process, steps of the wall clock that
//     real elapsed time (Go's monotonic clock) does not explain are taken as
//     they come up to jumpTolerance in all; beyond it they are held: the
//     schedule goes on at the pace of real time, behind the wall clock by
//     the excess, until the wall clock is corrected or an operator accepts
//     the new time (clock/accept). A gap
//     between the stored high-water mark and the clock at start-up is what
//     an outage, a seal or a restart looks like, so it is never held.
//
// Tokens carry the wall clock, but never a time ahead of the schedule: while
// a step is held their iat and exp follow the schedule, so a token never
// outlives its key's publication and signing never fails because wall time
// passed a held key's remove_at.

// jumpTolerance is the largest unexplained forward step taken as it comes:
// the clockSkewSeconds every token's expiry keeps from its key's removal
// absorbs it.
const jumpTolerance = time.Duration(clockSkewSeconds) * time.Second

// clockSource is where time comes from: the wall clock, and a monotonic clock
// that only real elapsed time moves. Tests replace it.
type clockSource interface {
	Now() time.Time
	Elapsed() time.Duration
}

type systemClock struct{ start time.Time }

func (c systemClock) Now() time.Time         { return time.Now() }
func (c systemClock) Elapsed() time.Duration { return time.Since(c.start) }

// reading is one look at the schedule clock.
type reading struct {
	// Schedule is the time key states follow, in Unix seconds. It never
	// decreases.
	Schedule int64
	// Token is the time to stamp on a token signed now: the wall clock, but
	// never after Schedule.
	Token int64
	// Wall is the wall clock, and HeldSeconds how far the schedule is held
	// behind it because of an unexplained forward step (0: not held).
	Wall        int64
	HeldSeconds int64
}

// clockEvent reports a change of the hold, for logs and metrics.
type clockEvent struct {
	kind        string // "held", "released" or "accepted"
	heldSeconds int64  // held (for "held": the new total)
	stepSeconds int64  // how far the wall clock stepped, unexplained by real time
}

type scheduleClock struct {
	mu  sync.Mutex
	src clockSource
	// lastWall and lastMono are the previous reading, in nanoseconds.
	seen     bool
	lastWall int64
	lastMono time.Duration
	// drift is the net movement of the wall clock that elapsed time does
	// not explain, since the process started or the operator last accepted
	// the time.
	drift     time.Duration
	held      bool
	heldSince int64
	highWater int64
	// notify is told of holds and releases, outside the lock.
	notify func(clockEvent)
}

func newScheduleClock(src clockSource) *scheduleClock {
	return &scheduleClock{src: src}
}

// read takes one reading of the clock.
func (c *scheduleClock) read() reading {
	c.mu.Lock()
	r, ev := c.readLocked()
	notify := c.notify
	c.mu.Unlock()
	if ev != nil && notify != nil {
		notify(*ev)
	}
	return r
}

func (c *scheduleClock) readLocked() (reading, *clockEvent) {
	wallT := c.src.Now()
	wall, mono := wallT.UnixNano(), c.src.Elapsed()
	var ev *clockEvent
	if c.seen {
		// Slewing moves both clocks alike; only steps (and time spent
		// suspended, which the monotonic clock does not count) show here.
		step := time.Duration(wall-c.lastWall) - (mono - c.lastMono)
		c.drift += step
		switch {
		case c.drift > jumpTolerance && !c.held:
			c.held = true
			c.heldSince = wall / int64(time.Second)
			ev = &clockEvent{kind: "held", heldSeconds: int64((c.drift - jumpTolerance) / time.Second), stepSeconds: int64(step / time.Second)}
		case c.drift > jumpTolerance && step > jumpTolerance:
			ev = &clockEvent{kind: "held", heldSeconds: int64((c.drift - jumpTolerance) / time.Second), stepSeconds: int64(step / time.Second)}
		case c.drift <= jumpTolerance && c.held:
			c.held = false
			ev = &clockEvent{kind: "released", stepSeconds: int64(step / time.Second)}
		}
	}
	c.seen, c.lastWall, c.lastMono = true, wall, mono

	wallSec := wallT.Unix()
	sched := wallSec
	held := int64(0)
	if c.held {
		// Steps up to the tolerance were taken as they came; only what
		// goes beyond it is held, so the schedule does not stall.
		held = int64((c.drift - jumpTolerance) / time.Second)
		sched = wallSec - held
	}
	if c.drift < 0 && sched >= c.highWater {
		// The wall clock has caught up with a step back: nothing is left
		// to explain.
		c.drift = 0
	}
	if sched < c.highWater {
		sched = c.highWater
	}
	c.highWater = sched
	return reading{Schedule: sched, Token: min(wallSec, sched), Wall: wallSec, HeldSeconds: held}, ev
}

// observe raises the high-water mark to a time read from storage.
func (c *scheduleClock) observe(t int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t > c.highWater {
		c.highWater = t
	}
}

// accept ends a hold: the schedule takes the wall clock's time.
func (c *scheduleClock) accept() (reading, int64) {
	c.mu.Lock()
	// Take in any step since the last reading first: an accept that is
	// the first request after a step accepts that step too.
	c.readLocked()
	held := int64(0)
	if c.held {
		held = int64((c.drift - jumpTolerance) / time.Second)
	}
	c.drift, c.held = 0, false
	r, _ := c.readLocked()
	notify := c.notify
	c.mu.Unlock()
	if notify != nil && held > 0 {
		notify(clockEvent{kind: "accepted", heldSeconds: held})
	}
	return r, held
}

// heldSinceUnix is when the current hold began (0: not held).
func (c *scheduleClock) heldSinceUnix() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.held {
		return 0
	}
	return c.heldSince
}
