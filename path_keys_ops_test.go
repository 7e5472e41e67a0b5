package jwtrotor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func opsEnv(t *testing.T) *testEnv {
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	return e
}

func (e *testEnv) signKID() string {
	e.t.Helper()
	return e.mustWrite("sign/r", nil).Data["kid"].(string)
}

func (e *testEnv) jwksKIDs() []string {
	e.t.Helper()
	_, body, _ := e.jwks("jwks")
	return kidsOf(e.t, body)
}

// TestRotateScheduledForcedAndIdempotent: a rotate before the lead is
// scheduled a lead away and changes nothing now; a repeated rotate with the
// old expected_active_kid is a no-op that stores nothing; force activates at
// once and keeps the outgoing key published.
func TestRotateScheduledForcedAndIdempotent(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	first := e.signKID()
	// The pending key has been published 0s: a plain rotate is scheduled.
	resp := e.mustWrite("keys/k/rotate", map[string]any{"expected_active_kid": first})
	at := resp.Data["activates_at"].(int64)
	if at != e.clock.Now().Unix()+600 || !strings.Contains(strings.Join(resp.Warnings, " "), "scheduled") {
		t.Fatalf("rotate before the lead must be scheduled a lead away: %v %v", resp.Data, resp.Warnings)
	}
	next := resp.Data["promoted_kid"].(string)
	if e.signKID() != first {
		t.Fatal("a scheduled rotation took effect at once")
	}
	// Re-applying with the old expectation once the new key is active is a no-op.
	e.clock.Advance(10 * time.Minute)
	if e.signKID() != next {
		t.Fatal("the scheduled rotation did not happen to the second")
	}
	before := dump(t, e.storage)
	resp = e.mustWrite("keys/k/rotate", map[string]any{"expected_active_kid": first})
	if resp.Data["rotated"] != false {
		t.Fatalf("expected_active_kid mismatch must be a no-op: %v", resp.Data)
	}
	sameStorage(t, before, dump(t, e.storage))

	// force: now, with a warning; the outgoing key stays published.
	resp = e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	forced := resp.Data["active_kid"].(string)
	if e.signKID() != forced || !slices.Contains(e.jwksKIDs(), next) {
		t.Fatal("force must promote now and keep the outgoing key published")
	}
	// revoke_active: the outgoing key leaves the JWKS at once.
	resp = e.mustWrite("keys/k/rotate", map[string]any{"revoke_active": true})
	if slices.Contains(e.jwksKIDs(), forced) || e.signKID() == forced {
		t.Fatal("revoke_active must take the outgoing key out at once")
	}
	if !strings.Contains(strings.Join(resp.Warnings, " "), "revoked") {
		t.Fatalf("warnings %v", resp.Warnings)
	}
}

// TestRevoke: revoking the pending key stocks another that waits its lead,
// a retiring key leaves the JWKS at once, and revoking the active key
// promotes the pending key at once, with a warning.
func TestRevoke(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	e.clock.Advance(2 * time.Hour)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	ring := e.ring("k")
	now := e.clock.Now().Unix()
	a := activeIndex(ring.Keys, now)
	retiring, active, pending := ring.Keys[a-1].KID, ring.Keys[a].KID, ring.Keys[liveAfter(ring.Keys, a)].KID

	// Pending: a new one is stocked and the next activation waits its lead.
	e.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	ring = e.ring("k")
	a = activeIndex(ring.Keys, now)
	p := liveAfter(ring.Keys, a)
	if slices.Contains(e.jwksKIDs(), pending) || p < 0 || ring.Keys[p].ActivateAt < ring.Keys[p].PublishAt+600 {
		t.Fatalf("after revoking the pending key: %+v", ring.Keys)
	}
	// Retiring: out at once.
	e.mustWrite("keys/k/revoke", map[string]any{"kid": retiring})
	if slices.Contains(e.jwksKIDs(), retiring) {
		t.Fatal("a revoked retiring key is still published")
	}
	// Active: the pending key signs at once, with a warning.
	resp := e.mustWrite("keys/k/revoke", map[string]any{"kid": active})
	if e.signKID() == active || slices.Contains(e.jwksKIDs(), active) || len(resp.Warnings) == 0 {
		t.Fatal("revoking the active key must promote the pending key at once")
	}
	// Revoked kids never return, and a revoked key cannot be rolled back to.
	r, err := e.write("keys/k/rollback", nil)
	expect400(t, r, err, "rollback", "revoked")
	e.simulate(6*time.Hour, time.Minute, time.Minute, func(time.Time) {
		for _, k := range []string{pending, retiring, active} {
			if slices.Contains(e.jwksKIDs(), k) {
				t.Fatalf("revoked %s came back", k)
			}
		}
	})
}

// TestRollback: the previous key signs again until its retire_at plus one
// period, the newer key returns to pending and stays published, no
// remove_at moves more than one period, and a second rollback is refused.
func TestRollback(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	e.clock.Advance(61 * time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	ring := e.ring("k")
	now := e.clock.Now().Unix()
	a := activeIndex(ring.Keys, now)
	prev, cur := ring.Keys[a-1], ring.Keys[a]
	resp := e.mustWrite("keys/k/rollback", nil)
	if e.signKID() != prev.KID {
		t.Fatal("rollback must make the previous key sign again")
	}
	until := resp.Data["activates_at"].(int64)
	if until != prev.RetireAt+3600 {
		t.Fatalf("the newer key must return at the previous key's retire_at + period, got %d", until)
	}
	after := e.ring("k")
	for _, k := range after.Keys {
		if k.KID == prev.KID && k.RemoveAt > prev.RemoveAt+3600 {
			t.Fatalf("rollback moved remove_at of %s by %ds, more than one period", k.KID, k.RemoveAt-prev.RemoveAt)
		}
		if k.KID == cur.KID && (k.state(now) != statePending || !slices.Contains(e.jwksKIDs(), cur.KID)) {
			t.Fatal("the newer key must return to pending and stay published")
		}
	}
	// A second rollback is refused; at `until` the newer key signs again.
	r, err := e.write("keys/k/rollback", nil)
	expect400(t, r, err, "rollback", "already took part")
	e.clock.Advance(time.Unix(until, 0).Sub(e.clock.Now()))
	if e.signKID() != cur.KID {
		t.Fatal("the newer key did not activate at the end of the rollback")
	}
	// Once the previous key has left the JWKS, rollback is refused with
	// the reason.
	e2 := newEnv(t)
	e2.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "5m"})
	e2.clock.Advance(67 * time.Minute)
	if err := e2.maintain(); err != nil {
		t.Fatal(err)
	}
	r, err = e2.write("keys/k/rollback", nil)
	expect400(t, r, err, "rollback", "removed")
}

// keyState is one key as keys/<name> reads it.
func (e *testEnv) keyState(ring, kid string) map[string]any {
	e.t.Helper()
	for _, k := range e.read("keys/" + ring).Data["signing_keys"].([]map[string]any) {
		if k["kid"] == kid {
			return k
		}
	}
	return nil
}

// TestForceIsForcedOnlyBeforeTheLead: rotate force=true and revoking the
// active key cut a lead short, and say so (the key is marked forced, the
// warning gives the seconds it was published), only while the next key has
// been published for less than publish_lead; at the lead exactly the key
// activates as scheduled, unforced. Either way it signs now, and the answer
// says nothing of a schedule.
func TestForceIsForcedOnlyBeforeTheLead(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		after  time.Duration
		forced bool
	}{{599 * time.Second, true}, {600 * time.Second, false}} {
		e := opsEnv(t)
		pending := e.ring("k").Keys[1].KID
		e.clock.Advance(c.after)
		resp := e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		warned := strings.Contains(strings.Join(resp.Warnings, " "), fmt.Sprintf("forced: key %s signs now after %ds in the JWKS, less than publish_lead (600s)", pending, int(c.after.Seconds())))
		if resp.Data["active_kid"] != pending || e.keyState("k", pending)["forced"] != c.forced || warned != c.forced {
			t.Fatalf("rotate force %s after publication: active %v, key %v, warnings %q; want forced=%v", c.after, resp.Data["active_kid"], e.keyState("k", pending), resp.Warnings, c.forced)
		}
		// It signs now: nothing is scheduled.
		if w := strings.Join(resp.Warnings, " "); strings.Contains(w, "scheduled") {
			t.Fatalf("rotate force %s after publication activates now, but warns %q", c.after, w)
		}

		e = opsEnv(t)
		active, pending := e.signKID(), e.ring("k").Keys[1].KID
		e.clock.Advance(c.after)
		resp = e.mustWrite("keys/k/revoke", map[string]any{"kid": active})
		warned = strings.Contains(strings.Join(resp.Warnings, " "), fmt.Sprintf("key %s signs from now after %ds in the JWKS (publish_lead is 600s)", pending, int(c.after.Seconds())))
		if e.signKID() != pending || e.keyState("k", pending)["forced"] != c.forced || !warned {
			t.Fatalf("revoke of the active key %s after publication: key %v, warnings %q; want forced=%v", c.after, e.keyState("k", pending), resp.Warnings, c.forced)
		}
	}
}

// TestRevokeLaterPendingKey: revoking a pending key that is not the next
// one leaves the next key's slot alone, and the keys after the revoked one
// close up behind it, each a rotation_period after the one before.
func TestRevokeLaterPendingKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "30m", "verification_ttl": "1h"})
	// Maintenance stocks keys up to the lead ahead: three or more pending.
	e.simulate(20*time.Minute, time.Minute, time.Minute, func(time.Time) {})
	before := e.ring("k")
	now := e.clock.Now().Unix()
	a := activeIndex(before.Keys, now)
	pending := append([]signingKey(nil), before.Keys[a+1:]...)
	if len(pending) < 3 {
		t.Fatalf("set-up: want at least 3 pending keys, have %+v", before.Keys)
	}
	e.mustWrite("keys/k/revoke", map[string]any{"kid": pending[1].KID})
	after := e.ring("k")
	var live []signingKey
	for _, k := range after.Keys[activeIndex(after.Keys, now)+1:] {
		if !k.revoked() {
			live = append(live, k)
		}
	}
	if live[0].KID != pending[0].KID || live[0].ActivateAt != pending[0].ActivateAt {
		t.Fatalf("the next key moved: %+v, was %+v", live[0], pending[0])
	}
	for i := 1; i < len(live); i++ {
		if live[i].ActivateAt != live[i-1].ActivateAt+600 {
			t.Fatalf("pending key %d activates %ds after the one before, want a rotation_period (600s): %+v", i, live[i].ActivateAt-live[i-1].ActivateAt, live)
		}
		if live[i].KID == pending[1].KID {
			t.Fatal("the revoked key is still pending")
		}
	}
	if live[1].KID != pending[2].KID {
		t.Fatalf("the key after the revoked one (%s) does not take its place: %+v", pending[2].KID, live)
	}

	// A new ring, before its first key activates: the keys after a revoked
	// later key close up behind the first.
	e2 := newEnv(t)
	e2.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
	e2.mustWrite("keys/n", map[string]any{"algorithm": "EdDSA", "rotation_period": "10m", "publish_lead": "30m", "verification_ttl": "1h"})
	e2.simulate(20*time.Minute, time.Minute, time.Minute, func(time.Time) {})
	keys := e2.ring("n").Keys
	if len(keys) < 3 || activeIndex(keys, e2.clock.Now().Unix()) >= 0 {
		t.Fatalf("set-up: want three pending keys and none active, have %+v", keys)
	}
	e2.mustWrite("keys/n/revoke", map[string]any{"kid": keys[1].KID})
	after2 := e2.ring("n").Keys
	if after2[0].ActivateAt != keys[0].ActivateAt || after2[2].KID != keys[2].KID || after2[2].ActivateAt != keys[0].ActivateAt+600 {
		t.Fatalf("revoking the second of a new ring's pending keys: %+v, want the third a period after the first", after2)
	}
}

// TestRevokeNextKeyKeepsTheSuccessorsLead: revoking the pending key that was
// next gives its slot to the key after it, but never before that key has
// been in the JWKS for the current publish_lead: after the lead was raised,
// a key published less than the new lead before the slot activates a full
// lead after its publication.
func TestRevokeNextKeyKeepsTheSuccessorsLead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "30m", "verification_ttl": "1h"})
	e.simulate(20*time.Minute, time.Minute, time.Minute, func(time.Time) {})
	// Keys already stocked keep their slots; later ones wait the new lead.
	e.mustWrite("keys/k", map[string]any{"publish_lead": "40m"})
	now := e.clock.Now().Unix()
	before := e.ring("k")
	a := activeIndex(before.Keys, now)
	if a < 0 || len(before.Keys) < a+3 {
		t.Fatalf("set-up: want an active key and two pending after it, have %+v", before.Keys)
	}
	next, after := before.Keys[a+1], before.Keys[a+2]
	want := max(next.ActivateAt, after.PublishAt+2400, now)
	if want == next.ActivateAt {
		t.Fatalf("set-up: the key after the next was published a full lead before the next's slot (the test would prove nothing): next activates at %d, the one after was published at %d", next.ActivateAt, after.PublishAt)
	}
	e.mustWrite("keys/k/revoke", map[string]any{"kid": next.KID})
	got := e.ring("k").Keys
	for _, k := range got {
		if k.KID == after.KID {
			if k.ActivateAt != want {
				t.Fatalf("the key after the revoked one activates at +%ds from its publication, want +%ds (its slot, but never under publish_lead)",
					k.ActivateAt-k.PublishAt, want-k.PublishAt)
			}
			return
		}
	}
	t.Fatalf("the key after the revoked one is gone: %+v", got)
}

// TestRevokeBehindATombstone: revoking a later pending key whose
// predecessor is already revoked closes the keys after it up behind the
// nearest live key before it, skipping the tombstone: each live pending key
// activates a rotation_period after the one before, or later if its
// publish_lead is not complete by then.
func TestRevokeBehindATombstone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "30m", "verification_ttl": "1h"})
	e.simulate(20*time.Minute, time.Minute, time.Minute, func(time.Time) {})
	now := e.clock.Now().Unix()
	livePending := func() []signingKey {
		r := e.ring("k")
		var live []signingKey
		for _, k := range r.Keys[activeIndex(r.Keys, now)+1:] {
			if !k.revoked() {
				live = append(live, k)
			}
		}
		return live
	}
	p := livePending()
	if len(p) < 4 {
		t.Fatalf("set-up: want at least 4 pending keys, have %+v", p)
	}
	e.mustWrite("keys/k/revoke", map[string]any{"kid": p[1].KID})
	e.mustWrite("keys/k/revoke", map[string]any{"kid": p[2].KID})
	live := livePending()
	if live[0].KID != p[0].KID || live[1].KID != p[3].KID {
		t.Fatalf("after revoking the second and third pending keys, the live ones are %+v", live)
	}
	for i := 1; i < len(live); i++ {
		if want := max(live[i-1].ActivateAt+600, live[i].PublishAt+1800); live[i].ActivateAt != want {
			t.Fatalf("pending key %d activates %ds after the one before, want %ds (a rotation_period, or later to complete its publish_lead)",
				i, live[i].ActivateAt-live[i-1].ActivateAt, want-live[i-1].ActivateAt)
		}
	}
}
