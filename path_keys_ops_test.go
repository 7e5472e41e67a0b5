package jwtrotor

import (
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
	if e.signKID() != forced || !has(e.jwksKIDs(), next) {
		t.Fatal("force must promote now and keep the outgoing key published")
	}
	// revoke_active: the outgoing key leaves the JWKS at once.
	resp = e.mustWrite("keys/k/rotate", map[string]any{"revoke_active": true})
	if has(e.jwksKIDs(), forced) || e.signKID() == forced {
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
	if has(e.jwksKIDs(), pending) || p < 0 || ring.Keys[p].ActivateAt < ring.Keys[p].PublishAt+600 {
		t.Fatalf("after revoking the pending key: %+v", ring.Keys)
	}
	// Retiring: out at once.
	e.mustWrite("keys/k/revoke", map[string]any{"kid": retiring})
	if has(e.jwksKIDs(), retiring) {
		t.Fatal("a revoked retiring key is still published")
	}
	// Active: the pending key signs at once, with a warning.
	resp := e.mustWrite("keys/k/revoke", map[string]any{"kid": active})
	if e.signKID() == active || has(e.jwksKIDs(), active) || len(resp.Warnings) == 0 {
		t.Fatal("revoking the active key must promote the pending key at once")
	}
	// Revoked kids never return, and a revoked key cannot be rolled back to.
	r, err := e.write("keys/k/rollback", nil)
	expect400(t, r, err, "rollback", "revoked")
	e.simulate(6*time.Hour, time.Minute, time.Minute, func(time.Time) {
		for _, k := range []string{pending, retiring, active} {
			if has(e.jwksKIDs(), k) {
				t.Fatalf("revoked %s came back", k)
			}
		}
	})
}

// TestRollback: the previous key signs again until its retire_at plus one
// period, the newer key returns to pending and stays published, no
// remove_at moves more than one period, and a second rollback is refused.
func TestRollback(t *testing.T) {
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
		if k.KID == cur.KID && (k.state(now) != statePending || !has(e.jwksKIDs(), cur.KID)) {
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
