package jwtrotor

import (
	"testing"
	"time"
)

// A ring write forgets removed keys and keeps revoked keys as tombstones
// (no public key), at most maxTombstones of them, the oldest forgotten
// first; the mark of the latest removal never moves back.
func TestCompactTombstones(t *testing.T) {
	r := opRing()
	now := int64(150)
	for i := 0; i < maxTombstones+5; i++ {
		r.Keys = append(r.Keys, signingKey{KID: string(rune('a' + i)), Alg: "EdDSA", PublicJWK: []byte("{}"),
			ActivateAt: 1000 + int64(i), RevokedAt: 100, Overlap: 150})
	}
	forgotten := compact(r, now)
	tombstones := 0
	for _, k := range r.Keys {
		if k.revoked() {
			tombstones++
			if k.PublicJWK != nil {
				t.Fatalf("tombstone %s keeps its public key", k.KID)
			}
		}
	}
	if tombstones != maxTombstones || len(forgotten) != 5 {
		t.Fatalf("%d tombstones kept and %d forgotten, want %d and 5", tombstones, len(forgotten), maxTombstones)
	}
	if forgotten[0] != "a" {
		t.Fatalf("forgot %v first, want the oldest", forgotten)
	}
	// Later the retired keys A and B (removed at 250 and 350) are
	// forgotten, and so are tombstones older than verification_ttl.
	forgotten = compact(r, 400)
	if r.LastRemoval != 350 || len(r.Keys) != 2 {
		t.Fatalf("at 400: last removal %d, %d keys left (%v forgotten)", r.LastRemoval, len(r.Keys), forgotten)
	}
}

// A failed delete of a private half answers a warning, not a 500, and
// maintenance retries it until it succeeds.
func TestUndeletedPrivatesAreRetried(t *testing.T) {
	s := &deleteFailingStorage{}
	e := newEnv(t)
	s.Storage = e.storage
	e = newEnvOn(t, s, e.clock)
	e.setupRing("k", "ES256", nil)
	_, p := activeAndPending(e.ring("k").Keys, e.clock.Now().Unix())
	kid := e.ring("k").Keys[p].KID
	resp := e.mustWrite("keys/k/revoke", map[string]any{"kid": kid})
	if len(resp.Warnings) == 0 || len(e.b.undeleted) != 1 {
		t.Fatalf("warnings %v, %d deletes to retry", resp.Warnings, len(e.b.undeleted))
	}
	e.clock.Advance(time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if len(e.b.undeleted) != 0 {
		t.Fatal("maintenance did not retry the delete")
	}
}
