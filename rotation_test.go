package jwtrotor

import (
	"fmt"
	"testing"
	"time"
)

// Tests of the key schedule's building blocks (rotation.go) where the
// endpoints cannot reach a boundary on their own.

// TestSortKeysByActivationThenPublication: the chain is walked in
// activation order, and keys that activate together in publication order,
// whatever order they were stored in (an algorithm change appends a key that
// may activate before keys published earlier).
func TestSortKeysByActivationThenPublication(t *testing.T) {
	keys := []signingKey{
		{KID: "d", PublishAt: 10, ActivateAt: 400},
		{KID: "b", PublishAt: 50, ActivateAt: 200},
		{KID: "c2", PublishAt: 30, ActivateAt: 300},
		{KID: "a", PublishAt: 90, ActivateAt: 100},
		{KID: "c1", PublishAt: 20, ActivateAt: 300},
	}
	sortKeys(keys)
	var got []string
	for _, k := range keys {
		got = append(got, k.KID)
	}
	if fmt.Sprint(got) != "[a b c1 c2 d]" {
		t.Fatalf("sorted %v, want [a b c1 c2 d]", got)
	}
}

// TestKeyRevokedAsItActivatedNeverSigned: a key revoked in the second it
// activated never signed (revoked at or before its activation), so a
// rollback passes over it to the key before it, as over a key revoked while
// pending; a key revoked a second later did sign, and blocks the rollback.
func TestKeyRevokedAsItActivatedNeverSigned(t *testing.T) {
	for _, later := range []bool{false, true} {
		e := opsEnv(t)
		e.clock.Advance(61 * time.Minute)
		if err := e.maintain(); err != nil {
			t.Fatal(err)
		}
		previous := e.signKID()
		forced := e.mustWrite("keys/k/rotate", map[string]any{"force": true}).Data["active_kid"].(string)
		if later {
			e.clock.Advance(time.Second)
		}
		e.mustWrite("keys/k/revoke", map[string]any{"kid": forced})
		resp, err := e.write("keys/k/rollback", nil)
		if !later {
			if err != nil || resp.IsError() || e.signKID() != previous {
				t.Fatalf("rollback past a key revoked as it activated: %v %s; signs with %s, want %s", err, respErr(resp), e.signKID(), previous)
			}
			continue
		}
		expect400(t, resp, err, "rollback", "revoked")
	}
}
