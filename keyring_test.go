package jwtrotor

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of how rings are written (keyring.go): tombstones, the entry bound
// and private halves whose delete failed.

// revokedKIDs lists the revoked keys keys/<name> reads, oldest first.
func (e *testEnv) revokedKIDs(ring string) []string {
	e.t.Helper()
	var out []string
	for _, k := range e.read("keys/" + ring).Data["signing_keys"].([]map[string]any) {
		if k["state"] == stateRevoked {
			out = append(out, k["kid"].(string))
		}
	}
	return out
}

// TestTombstonesKeptForTheOverlap: a revoked key stays readable, as a
// tombstone, for verification_ttl after its revocation, and is forgotten at
// that second exactly.
func TestTombstonesKeptForTheOverlap(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	pending := e.ring("k").Keys[1].KID
	e.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	e.clock.Advance(2*time.Hour - time.Second)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	e.mustWrite("keys/k", map[string]any{"rotation_period": "1h"}) // a ring write settles the ring
	if got := e.revokedKIDs("k"); len(got) != 1 || got[0] != pending {
		t.Fatalf("a second before verification_ttl has passed: revoked keys %v, want [%s]", got, pending)
	}
	e.clock.Advance(time.Second)
	e.mustWrite("keys/k", map[string]any{"rotation_period": "1h"})
	if got := e.revokedKIDs("k"); len(got) != 0 {
		t.Fatalf("verification_ttl after the revocation: revoked keys %v, want none", got)
	}
}

// TestTombstonesBounded: a ring keeps at most maxTombstones tombstones; the
// revocation past it forgets the oldest, not more.
func TestTombstonesBounded(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	var revoked []string
	for i := 0; i < maxTombstones+2; i++ {
		r := e.ring("k")
		next := r.Keys[liveAfter(r.Keys, activeIndex(r.Keys, e.clock.Now().Unix()))].KID
		e.mustWrite("keys/k/revoke", map[string]any{"kid": next})
		revoked = append(revoked, next)
		want := revoked[max(0, len(revoked)-maxTombstones):]
		if got := e.revokedKIDs("k"); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("after %d revocations: %d tombstones %v, want the last %d %v", len(revoked), len(got), got, len(want), want)
		}
	}
}

// TestRingEntryBound: a ring entry of exactly maxRingEntryBytes is stored;
// one byte more is refused and nothing is written.
func TestRingEntryBound(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	now := e.clock.Now().Unix()
	entry := func(pad int) (*ringEntry, int) {
		r := e.ring("k")
		for i := range r.Keys {
			if r.Keys[i].state(now) == stateActive {
				// A JWK padded with a member no reader uses.
				var jwk map[string]any
				if err := json.Unmarshal(r.Keys[i].PublicJWK, &jwk); err != nil {
					t.Fatal(err)
				}
				jwk["x-pad"] = strings.Repeat("p", pad)
				r.Keys[i].PublicJWK, _ = json.Marshal(jwk)
			}
		}
		r.Version, r.HighWater = schemaVersion, now
		se, err := logical.StorageEntryJSON(ringPrefix+r.Name, r)
		if err != nil {
			t.Fatal(err)
		}
		return r, len(se.Value)
	}
	_, base := entry(0)
	pad := maxRingEntryBytes - base
	r, n := entry(pad)
	if n != maxRingEntryBytes {
		t.Fatalf("set-up: padded entry is %d bytes, want %d", n, maxRingEntryBytes)
	}
	if _, _, err := e.b.commitRing(context.Background(), e.storage, e.ring("k"), r, now); err != nil {
		t.Fatalf("an entry of exactly %d bytes: %v", maxRingEntryBytes, err)
	}
	before := dump(t, e.storage)
	r, n = entry(pad + 1)
	if n != maxRingEntryBytes+1 {
		t.Fatalf("set-up: padded entry is %d bytes, want %d", n, maxRingEntryBytes+1)
	}
	_, _, err := e.b.commitRing(context.Background(), e.storage, e.ring("k"), r, now)
	if err == nil || !strings.Contains(err.Error(), "above the 98304-byte bound") {
		t.Fatalf("an entry one byte past the bound: %v", err)
	}
	sameStorage(t, before, dump(t, e.storage))
}

// deleteFailing fails every Delete while fail is set.
type deleteFailing struct {
	logical.Storage
	fail bool
}

func (s *deleteFailing) Delete(ctx context.Context, key string) error {
	if s.fail {
		return errors.New("injected delete failure")
	}
	return s.Storage.Delete(ctx, key)
}

// TestFailedPrivateDeleteRetried: a private half whose delete fails after
// its ring was written is reported as a warning, not a failure, and the next
// maintenance pass retries the delete and succeeds; the pass after has
// nothing left.
func TestFailedPrivateDeleteRetried(t *testing.T) {
	t.Parallel()
	s := &deleteFailing{Storage: &logical.InmemStorage{}}
	e := newEnvOn(t, s, &fakeClock{now: testStart})
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	pending := e.ring("k").Keys[1].KID
	// The first pass sweeps orphaned private halves, once per process: the
	// retry, not the sweep, must delete the one that fails below.
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	s.fail = true
	resp := e.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	if !strings.Contains(strings.Join(resp.Warnings, " "), "could not be deleted yet") {
		t.Fatalf("revoke with failing deletes: warnings %q, want one about the private half", resp.Warnings)
	}
	if _, ok := dump(t, e.storage)[privatePath("k", pending)]; !ok {
		t.Fatal("set-up: the delete did not fail")
	}
	s.fail = false
	for pass := 1; pass <= 2; pass++ {
		if err := e.maintain(); err != nil {
			t.Fatalf("maintenance pass %d after the failed delete: %v", pass, err)
		}
		if _, ok := dump(t, e.storage)[privatePath("k", pending)]; ok {
			t.Fatalf("maintenance pass %d left the revoked key's private half", pass)
		}
	}
}

// A failed delete of a private half answers a warning, not a 500, and
// maintenance retries it until it succeeds.
func TestUndeletedPrivatesAreRetried(t *testing.T) {
	t.Parallel()
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
