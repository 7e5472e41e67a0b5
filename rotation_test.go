package jwtrotor

import (
	"fmt"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
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
	t.Parallel()
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
	t.Parallel()
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

// The lifecycle (rotation.go: states and schedule; operations.go: rotate,
// revoke, rollback, settings changes, delete; bounds.go: the bounds) is pure:
// a function of a ring's stored timestamps and a time. It reads no storage,
// clock or randomness, and knows nothing of Vault, so the same answer comes
// out on every node and in tests that drive days in milliseconds. This test
// keeps it so: those files may import only these packages.
func TestLifecycleIsPure(t *testing.T) {
	t.Parallel()
	allowed := map[string]bool{"cmp": true, "encoding/json": true, "fmt": true, "maps": true, "math": true, "slices": true, "sort": true}
	for _, file := range []string{"rotation.go", "operations.go", "bounds.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Imports) == 0 {
			t.Fatalf("%s: no imports parsed (the test would prove nothing)", file)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %s: the lifecycle must not depend on Vault, storage, clocks or randomness", file, path)
			}
		}
	}
}

// A ring write forgets removed keys and keeps revoked keys as tombstones
// (no public key), at most maxTombstones of them, the oldest forgotten
// first; the mark of the latest removal never moves back.
func TestCompactTombstones(t *testing.T) {
	t.Parallel()
	r := opRing()
	now := int64(150)
	// Tombstones of earlier writes, and one key revoked at the same time
	// but in this write (it still holds its public key): it is kept.
	first := len(r.Keys)
	for i := 0; i < maxTombstones+5; i++ {
		r.Keys = append(r.Keys, signingKey{KID: string(rune('a' + i)), Alg: "EdDSA",
			ActivateAt: 1000 + int64(i), RevokedAt: 100, Overlap: 150})
	}
	r.Keys[first].PublicJWK = []byte("{}")
	fresh := r.Keys[first].KID
	forgotten := compact(r, now)
	if slices.Contains(forgotten, fresh) {
		t.Fatalf("forgot %s in the write that revoked it", fresh)
	}
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
	if forgotten[0] != "b" {
		t.Fatalf("forgot %v first, want the oldest", forgotten)
	}
	// Later the retired keys A and B (removed at 250 and 350) are
	// forgotten, and so are tombstones older than verification_ttl.
	forgotten = compact(r, 400)
	if r.LastRemoval != 350 || len(r.Keys) != 2 {
		t.Fatalf("at 400: last removal %d, %d keys left (%v forgotten)", r.LastRemoval, len(r.Keys), forgotten)
	}
}
