package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Regression tests for defects found by review and by the model-based test
// (model_test.go). Each names the defect and the invariant it broke, and
// each failed before its fix.

// noPanic runs f and fails the test if it panics: one request must never be
// able to take the plugin process down.
func noPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("%s panicked: %v", what, r)
		}
	}()
	f()
}

// A null batch item field killed the process (parseBatchItem asserted
// v.(int64) on nil). It is now a 400 for that item alone.
func TestDefectBatchNullFieldIsAnItemError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "scope"})
	for _, field := range []string{"ttl", "claims", "audience", "subject"} {
		var resp *logical.Response
		var err error
		noPanic(t, "batch item with "+field+": null", func() {
			resp, err = e.write("sign/r", map[string]any{"batch_input": []any{map[string]any{field: nil}, map[string]any{}}})
		})
		if err != nil || resp == nil || resp.IsError() {
			t.Fatalf("%s: null: err=%v resp=%s", field, err, respErr(resp))
		}
		results := resp.Data["batch_results"].([]map[string]any)
		msg, _ := results[0]["error"].(string)
		if !strings.HasPrefix(msg, field+": null") {
			t.Fatalf("%s: null: item error %q does not name the field and the null", field, msg)
		}
		if results[1]["token"] == nil {
			t.Fatalf("%s: the good item beside the bad one got no token: %v", field, results[1])
		}
	}
}

// Revoking the pending key after a rollback rescheduled the next key from
// the active key's original activation, in the past: the signing key
// "retired" before it signed its last token, and that token outlived its
// key's publication (invariant 3, overlap). Reproduced on a real Vault with
// exactly these settings.
func TestDefectRevokePendingAfterRollbackKeepsOverlap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	t0 := e.clock.Now().Unix()
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 5})
	e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "30s", "publish_lead": "20s", "verification_ttl": "120s"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "60s", "max_ttl": "60s"})
	k1 := e.mustWrite("keys/k/rotate", map[string]any{"force": true}).Data["promoted_kid"].(string)
	e.clock.Advance(33 * time.Second)
	k2 := e.signKID()
	if k2 == k1 {
		t.Fatal("K2 did not activate on schedule")
	}
	if got := e.mustWrite("keys/k/rollback", nil).Data["active_kid"]; got != k1 {
		t.Fatalf("rollback made %v active, want %s", got, k1)
	}
	e.clock.Advance(22 * time.Second) // T0+55
	tok := e.mustWrite("sign/r", nil)
	if tok.Data["kid"] != k1 {
		t.Fatalf("K1 should sign after the rollback, %v did", tok.Data["kid"])
	}
	signedAt := e.clock.Now().Unix()
	exp := tok.Data["expires_at"].(int64)
	e.mustWrite("keys/k/revoke", map[string]any{"kid": k2})
	for _, k := range e.ring("k").Keys {
		if k.KID != k1 {
			continue
		}
		if k.RetireAt != 0 && k.RetireAt < signedAt {
			t.Fatalf("K1 retires at T0+%d, before it signed its last token at T0+%d", k.RetireAt-t0, signedAt-t0)
		}
		if k.RemoveAt != 0 && exp > k.RemoveAt-clockSkewSeconds {
			t.Fatalf("K1's token expires at T0+%d, past its remove_at T0+%d - 60", exp-t0, k.RemoveAt-t0)
		}
		return
	}
	t.Fatal("K1 vanished from the ring")
}

// A key's remove_at was recomputed from the ring's current
// verification_ttl when its successor changed: lowering the overlap after a
// key had signed long tokens made those tokens outlive the key.
func TestDefectLoweredOverlapKeepsSignedTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "1h", "max_ttl": "1h"})
	tok := e.mustWrite("sign/r", nil)
	kid, exp := tok.Data["kid"].(string), tok.Data["expires_at"].(int64)
	e.mustWrite("roles/r", map[string]any{"ttl": "5m", "max_ttl": "5m"})
	e.mustWrite("keys/k", map[string]any{"verification_ttl": "6m"})
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	for _, k := range e.ring("k").Keys {
		if k.KID == kid && exp > k.RemoveAt-clockSkewSeconds {
			t.Fatalf("a token of %s expires %ds after its key's remove_at - 60", kid, exp-(k.RemoveAt-clockSkewSeconds))
		}
	}
	// The same through a ring delete after the role moved away.
	e.mustWrite("keys/other", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.mustWrite("keys/k", map[string]any{"verification_ttl": "2h"})
	e.mustWrite("roles/r", map[string]any{"ttl": "1h", "max_ttl": "1h"})
	tok = e.mustWrite("sign/r", nil)
	kid, exp = tok.Data["kid"].(string), tok.Data["expires_at"].(int64)
	e.mustWrite("roles/r", map[string]any{"key": "other"})
	e.mustWrite("keys/k", map[string]any{"verification_ttl": "6m"})
	e.do(logical.DeleteOperation, "keys/k", nil)
	for _, k := range e.ring("k").Keys {
		if k.KID == kid && exp > k.RemoveAt-clockSkewSeconds {
			t.Fatalf("after delete, a token of %s expires %ds after its key's remove_at - 60", kid, exp-(k.RemoveAt-clockSkewSeconds))
		}
	}
}

// publishedCount is how many keys of ring name the JWKS serves now.
func (e *testEnv) publishedCount(name string) int {
	e.t.Helper()
	_, body, _ := e.jwks("jwks/" + name)
	return len(kidsOf(e.t, body))
}

// Forced rotations, algorithm toggles and revocations grew the JWKS and the
// stored ring without bound: each forced rotation left a retiring key
// published for a whole verification_ttl, each algorithm change appended a
// key, each revocation kept a whole key in the ring entry. Operations that
// add keys are now refused at the bound; a revoke never is.
func TestDefectStormsStayBounded(t *testing.T) {
	t.Parallel()
	t.Run("forced rotations", func(t *testing.T) {
		e := newEnv(t)
		e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
		refused := 0
		for i := 0; i < 100; i++ {
			resp, err := e.write("keys/k/rotate", map[string]any{"force": true})
			if err != nil {
				expect400(t, resp, err, "keys", "retry after")
				refused++
			}
			if n := e.publishedCount("k"); n > maxRingKeys {
				t.Fatalf("after %d forced rotations ring k publishes %d keys, above %d", i+1, n, maxRingKeys)
			}
		}
		if refused == 0 {
			t.Fatal("100 forced rotations within an hour were all accepted")
		}
	})
	t.Run("algorithm toggles", func(t *testing.T) {
		e := newEnv(t)
		e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
		for i := 0; i < 60; i++ {
			alg := []string{"EdDSA", "ES256"}[i%2]
			resp, err := e.write("keys/k", map[string]any{"algorithm": alg})
			if err != nil {
				expect400(t, resp, err, "algorithm", "retry after")
			}
			if n := len(e.ring("k").Keys); n > maxRingKeys {
				t.Fatalf("after %d algorithm changes ring k holds %d keys, above %d", i+1, n, maxRingKeys)
			}
		}
	})
	t.Run("revocations", func(t *testing.T) {
		e := newEnv(t)
		e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
		for i := 0; i < 150; i++ {
			resp, err := e.write("keys/k/rotate", map[string]any{"revoke_active": true})
			if err != nil || resp.IsError() {
				t.Fatalf("revocation %d refused: %v %s", i+1, err, respErr(resp))
			}
			if n := len(e.ring("k").Keys); n > maxRingKeys+maxTombstones {
				t.Fatalf("after %d revocations the stored ring holds %d keys, above %d + %d tombstones", i+1, n, maxRingKeys, maxTombstones)
			}
		}
		if n := len(dump(t, e.storage)[ringPrefix+"k"]); n > maxRingEntryBytes {
			t.Fatalf("after 150 revocations the stored ring is %d bytes, above %d", n, maxRingEntryBytes)
		}
	})
	t.Run("mount JWKS", func(t *testing.T) {
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
		var rings []string
		for i := 0; i < 100; i++ {
			name := fmt.Sprintf("r%d", i)
			if _, err := e.write("keys/"+name, map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "publish_lead": "1h", "verification_ttl": "8h"}); err != nil {
				break
			}
			rings = append(rings, name)
		}
		if len(rings) < 2 || len(rings) == 100 {
			t.Fatalf("%d rings fit in the mount (the test would prove nothing)", len(rings))
		}
		refused := 0
		for _, name := range rings {
			for i := 0; i < 20; i++ {
				if _, err := e.write("keys/"+name+"/rotate", map[string]any{"force": true}); err != nil {
					refused++
				}
				_, body, _ := e.jwks("jwks")
				if len(body) > maxJWKSBytes {
					t.Fatalf("the mount JWKS is %d bytes, above %d", len(body), maxJWKSBytes)
				}
			}
		}
		if refused == 0 {
			t.Fatal("no forced rotation was refused in a full mount")
		}
	})
}

// The largest ring the bounds allow fits in maxRingEntryBytes: maxRingKeys
// RSA-4096 keys, each with every timestamp and note set, maxTombstones
// tombstones, and (more than the bounds allow, as they count among the
// maxRingKeys) maxTrustedKeys trusted RSA-4096 keys; every kid a chosen kid
// of the longest length, beside its thumbprint.
func TestRingEntryBoundHolds(t *testing.T) {
	t.Parallel()
	g, err := sharedKeys.source()("RS512", 4096)
	if err != nil {
		t.Fatal(err)
	}
	r := &ringEntry{Version: schemaVersion, Name: strings.Repeat("n", 128), Algorithm: "RS512", RSABits: 4096}
	big := int64(1) << 62
	for i := 0; i < maxRingKeys+maxTombstones; i++ {
		kid := strings.Repeat("k", maxKIDLen)
		_, jwk, err := publicJWKAs(g.Private.Public(), "RS512", kid)
		if err != nil {
			t.Fatal(err)
		}
		k := signingKey{KID: kid, Thumbprint: g.KID, Imported: true, Alg: "RS512", PublicJWK: jwk, PublishAt: big, ActivateAt: big, RetireAt: big, RemoveAt: big,
			Overlap: big, Lead: big, Forced: true, RollbackUsed: true, GateOrigin: big, HasPrivate: true,
			GateNote: strings.Repeat("x", maxGateNote)}
		if i >= maxRingKeys {
			k.PublicJWK, k.RevokedAt, k.GateNote = nil, big, ""
		}
		r.Keys = append(r.Keys, k)
	}
	for i := 0; i < maxTrustedKeys; i++ {
		r.Trusted = append(r.Trusted, trustedKey{KID: r.Keys[0].KID, Alg: "RS512", Thumbprint: g.KID, PublicJWK: r.Keys[0].PublicJWK, AddedAt: big, ExpiresAt: big})
	}
	e, err := logical.StorageEntryJSON(ringPrefix+r.Name, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Value) > maxRingEntryBytes {
		t.Fatalf("the largest ring the bounds allow is %d bytes, above maxRingEntryBytes (%d)", len(e.Value), maxRingEntryBytes)
	}
	t.Logf("the largest ring entry the bounds allow: %d bytes of %d", len(e.Value), maxRingEntryBytes)
}

// deleteFailingStorage fails the first delete of a private half.
type deleteFailingStorage struct {
	logical.Storage
	mu     sync.Mutex
	failed bool
}

func (s *deleteFailingStorage) Delete(ctx context.Context, k string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(k, privatePrefix) && !s.failed {
		s.failed = true
		return errInjected
	}
	return s.Storage.Delete(ctx, k)
}

// A private half whose delete failed was never retried, and the caller got
// a 500 for a revoke that was committed.
func TestDefectFailedPrivateDeleteIsRetried(t *testing.T) {
	t.Parallel()
	s := &deleteFailingStorage{Storage: &logical.InmemStorage{}}
	e := newEnvOn(t, s, &fakeClock{now: testStart})
	e.setupRing("k", "ES256", nil)
	_, p := activeAndPending(e.ring("k").Keys, e.clock.Now().Unix())
	kid := e.ring("k").Keys[p].KID
	resp, err := e.write("keys/k/revoke", map[string]any{"kid": kid})
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("a committed revoke answered an error: %v %s", err, respErr(resp))
	}
	if !s.failed {
		t.Fatal("the delete never failed (the test would prove nothing)")
	}
	if !strings.Contains(strings.Join(resp.Warnings, " "), "retr") {
		t.Fatalf("the response does not say the delete will be retried: %v", resp.Warnings)
	}
	e.clock.Advance(time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if _, ok := dump(t, e.storage)[privatePath("k", kid)]; ok {
		t.Fatal("the private half of the revoked key is still stored after a maintenance pass")
	}
}

// The activation gate could be released or stalled by unauthenticated
// fetches: a flood of anonymous clients evicted declared verifiers, and a
// discovery fetch under a declared id removed it from the gate's count.
func TestDefectGateSpoofing(t *testing.T) {
	t.Parallel()
	t.Run("eviction", func(t *testing.T) {
		e := newEnv(t)
		e.setupRing("k", "ES256", nil)
		e.mustWrite("config", map[string]any{"verifiers": "gateway"})
		e.fetch("jwks", "gateway", "192.0.2.1:1", "envoy", "")
		for i := 0; i < maxTrackedClients+10; i++ {
			e.fetch("jwks", "", "203.0.113.9:1", fmt.Sprintf("flood-%d", i), "")
		}
		sum := e.read("verifiers").Data["summary"].(map[string]any)
		if nv := sum["declared_not_seen"].([]string); len(nv) != 0 {
			t.Fatalf("an anonymous flood evicted declared verifiers: not seen %v", nv)
		}
	})
	t.Run("discovery only", func(t *testing.T) {
		e := newEnv(t)
		e.setupRing("k", "ES256", nil)
		e.mustWrite("config", map[string]any{"verifiers": "gateway,billing"})
		e.fetch("jwks", "billing", "192.0.2.2:1", "jose", "")
		e.fetch(".well-known/openid-configuration", "gateway", "198.51.100.66:1", "spoof", "")
		rings := e.read("verifiers").Data["rings"].(map[string]any)
		if c := rings["k"].(map[string]any)["pending_coverage"].(float64); c != 0.5 {
			t.Fatalf("coverage %v: a discovery fetch under gateway's id must leave it stale (want 0.5)", c)
		}
	})
}

// Per-kid signing counters were deleted only by maintenance on the active
// node: on a standby that signs, they grew without bound.
func TestDefectStandbyMetricsBounded(t *testing.T) {
	t.Parallel()
	active, standby := twoNodes(t)
	clock := active.clock
	active.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 5})
	active.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": "10s", "publish_lead": "10s", "verification_ttl": "70s"})
	active.mustWrite("keys/k/rotate", map[string]any{"force": true})
	active.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "5s", "max_ttl": "10s"})
	standby.b.invalidate(context.Background(), configPath)
	standby.b.invalidate(context.Background(), rolePrefix+"r")
	kids := map[string]bool{}
	for i := 0; i < 360; i++ {
		clock.Advance(5 * time.Second)
		if i%12 == 0 {
			if err := active.maintain(); err != nil {
				t.Fatal(err)
			}
			standby.b.invalidate(context.Background(), ringPrefix+"k")
		}
		kids[standby.mustWrite("sign/r", nil).Data["kid"].(string)] = true
	}
	families, err := standby.b.metrics.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, f := range families {
		if f.GetName() == "jwt_rotor_tokens_signed_total" {
			series = len(f.GetMetric())
		}
	}
	ring := len(active.ring("k").Keys)
	if len(kids) < 100 {
		t.Fatalf("the standby signed with only %d kids (the test would prove nothing)", len(kids))
	}
	if series > ring {
		t.Fatalf("the standby keeps %d per-kid series for a ring of %d keys", series, ring)
	}
}

// The first fetch after a restart read the clock before the stored
// high-water mark was loaded: with the clock stepped back, it published a
// key that had already been removed (invariant 5).
func TestDefectFirstFetchAfterRestartHonoursHighWater(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "11m"})
	first := e.ring("k").Keys[0].KID
	e.simulate(25*time.Minute, time.Minute, time.Minute, func(time.Time) {})
	if slices.Contains(e.jwksKIDs(), first) {
		t.Fatal("the first key should have been removed by now")
	}
	e.clock.Advance(-10 * time.Minute)
	after := e.restart()
	if slices.Contains(after.jwksKIDs(), first) {
		t.Fatalf("the first fetch after a restart with the clock stepped back serves the removed key %s", first)
	}
}

// A forward step of the wall clock (a bad NTP step) activated every pending
// key and removed every retiring key while their tokens lived. The schedule
// now holds while the step is unexplained: keys keep their states, signing
// goes on, and the JWKS keeps every key a live token needs.
func TestDefectForwardClockJumpIsHeld(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "30m", "max_ttl": "1h"})
	tok := e.mustWrite("sign/r", nil)
	kid := tok.Data["kid"].(string)
	e.clock.Advance(time.Minute)
	e.clock.Step(48 * time.Hour)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(e.jwksKIDs(), kid) {
		t.Fatalf("after a 48h forward step the JWKS lost %s while its token lives", kid)
	}
	resp, err := e.write("sign/r", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("signing failed while the schedule is held: %v %s", err, respErr(resp))
	}
	if resp.Data["kid"] != kid {
		t.Fatalf("a held schedule must keep the active key: %v signed, want %s", resp.Data["kid"], kid)
	}
}

// Revoking the active key with no pending key made a key that signed at
// once without a full lead, but was not recorded as forced.
func TestDefectRevokeActiveWithoutPendingIsForced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	// A ring stored with no pending key (as an older version or a hand
	// repair may leave it).
	r := e.ring("k")
	now := e.clock.Now().Unix()
	a := activeIndex(r.Keys, now)
	active := r.Keys[a]
	active.RetireAt, active.RemoveAt = 0, 0
	r.Keys = []signingKey{active}
	if err := putJSON(context.Background(), e.storage, ringPrefix+"k", r); err != nil {
		t.Fatal(err)
	}
	e = e.restart()
	e.mustWrite("keys/k/revoke", map[string]any{"kid": active.KID})
	r = e.ring("k")
	a = activeIndex(r.Keys, now)
	if a < 0 {
		t.Fatal("no active key after revoking the active one")
	}
	if k := r.Keys[a]; k.ActivateAt < k.PublishAt+k.Lead && !k.Forced {
		t.Fatalf("key %s signs %ds after publication (lead %ds) but is not recorded as forced", k.KID, k.ActivateAt-k.PublishAt, k.Lead)
	}
}

// Revoking a new ring's first pending key slipped the first activation by a
// whole rotation_period instead of to the next key's publish_at + lead.
func TestDefectRevokeFirstPendingKeepsFirstActivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
	e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	first := e.read("keys/k").Data
	at := first["next_rotation"].(int64)
	e.mustWrite("keys/k/revoke", map[string]any{"kid": first["pending_kid"]})
	if got := e.read("keys/k").Data["next_rotation"].(int64); got != at {
		t.Fatalf("the first activation moved from %d to %d (%+ds)", at, got, got-at)
	}
}

// decodeStrict accepted trailing data after a closing brace or bracket.
func TestDefectTrailingJSONRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "a,x"})
	for _, s := range []string{`{"a":1}}`, `{"x":1}]junk`, `{"a":1} x`, `{"a":1}{}`} {
		r, err := e.write("sign/r", map[string]any{"claims": s})
		expect400(t, r, err, "claims", "trailing")
	}
}

// jwks/<Name> did not fold case as keys/<Name> does, and a role could name
// a ring in capitals that no ring has.
func TestDefectRingNameCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("prod", "ES256", nil)
	_, lower, _ := e.jwks("jwks/prod")
	status, upper, _ := e.jwks("jwks/Prod")
	if status != 200 || string(upper) != string(lower) {
		t.Fatalf("jwks/Prod answered %d %s, jwks/prod %s", status, upper, lower)
	}
	r, err := e.write("roles/r", map[string]any{"key": "Prod", "audiences": "api"})
	expect400(t, r, err, "key", "lower case")
	if _, ok := dump(t, e.storage)[rolePrefix+"r"]; ok {
		t.Fatal("a refused role was stored")
	}
}

// A document rendered before a write (or, on a standby, an invalidation)
// was cached after it and served until its next boundary: a revoked kid came
// back on that node for hours.
func TestDefectStaleDocumentNeverCached(t *testing.T) {
	t.Parallel()
	active, standby := twoNodes(t)
	clock := active.clock
	active.setupRing("k", "ES256", nil)
	for _, node := range []*testEnv{active, standby} {
		_, p := activeAndPending(active.ring("k").Keys, clock.Now().Unix())
		kid := active.ring("k").Keys[p].KID
		if !slices.Contains(node.jwksKIDs(), kid) {
			t.Fatalf("%s is not published before the race (the test would prove nothing)", kid)
		}
		node.b.mu.Lock()
		node.b.jwks = map[string]*renderedJWKS{} // the next fetch renders
		node.b.mu.Unlock()
		fired := false
		node.b.afterRender = func() {
			if fired {
				return
			}
			fired = true
			active.mustWrite("keys/k/revoke", map[string]any{"kid": kid})
			standby.b.invalidate(context.Background(), ringPrefix+"k")
		}
		node.jwksKIDs() // renders from the state before the revoke
		node.b.afterRender = nil
		if !fired {
			t.Fatal("the fetch did not render (the test would prove nothing)")
		}
		if slices.Contains(node.jwksKIDs(), kid) {
			t.Fatalf("node %d serves the revoked %s from a document rendered before the revoke", map[*testEnv]int{active: 0, standby: 1}[node], kid)
		}
	}
}

// panicStorage panics on every read: a stand-in for a bug anywhere below a
// handler.
type panicStorage struct{ logical.Storage }

func (panicStorage) Get(context.Context, string) (*logical.StorageEntry, error) {
	panic("storage exploded")
}

func (panicStorage) List(context.Context, string) ([]string, error) {
	panic("storage exploded")
}

// A panic in any handler, the existence check or the periodic function
// fails that request or pass alone: the process (which serves every mount)
// goes on, the panic is logged without the request's data, and counted.
func TestPanicFailsOneRequestOnly(t *testing.T) {
	t.Parallel()
	e := newEnvOn(t, panicStorage{&logical.InmemStorage{}}, &fakeClock{now: testStart})
	secret := "do-not-log-this-value"
	ctx := context.Background()
	var errs []error
	noPanic(t, "a request", func() {
		_, err := e.b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "roles/r", Storage: e.storage,
			Data: map[string]any{"key": "k", "audiences": secret}})
		errs = append(errs, err)
	})
	noPanic(t, "an existence check", func() {
		_, _, err := e.b.HandleExistenceCheck(ctx, &logical.Request{Operation: logical.CreateOperation, Path: "keys/k", Storage: e.storage})
		errs = append(errs, err)
	})
	noPanic(t, "the periodic function", func() {
		errs = append(errs, e.b.Backend.PeriodicFunc(ctx, &logical.Request{Storage: e.storage}))
	})
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "internal error") {
			t.Fatalf("call %d: want an internal error, got %v", i, err)
		}
	}
	families, _ := e.b.metrics.reg.Gather()
	counted := 0.0
	for _, f := range families {
		if f.GetName() == "jwt_rotor_panics_total" {
			for _, m := range f.GetMetric() {
				counted += m.GetCounter().GetValue()
			}
		}
	}
	if counted != 3 {
		t.Fatalf("jwt_rotor_panics_total = %v, want 3", counted)
	}
	logs := e.logs.String()
	if strings.Count(logs, "recovered from a panic") != 3 || !strings.Contains(logs, "storage exploded") {
		t.Fatalf("each panic must be logged with its value: %s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Fatal("a panic log line carries the request's data")
	}
	// The same backend serves the next request on working storage.
	ok := newEnv(t)
	ok.b = e.b
	if resp := ok.read("config"); resp == nil || resp.Data["jwks_max_age"] != defaultJWKSMaxAgeSeconds {
		t.Fatalf("the backend no longer serves after a panic: %v", respErr(resp))
	}
}

// Found by the model test: lengthening rotation_period reopened the
// rollback window of a retiring key whose private half was already deleted,
// so maintenance counted it as a key that can still sign without one. Such
// a key is no rollback candidate, and rollback says why.
func TestDefectLongerPeriodDoesNotReopenRollback(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
	e.mustWrite("keys/c", map[string]any{"algorithm": "EdDSA", "rotation_period": 600, "publish_lead": 60, "verification_ttl": 1800})
	e.clock.Advance(1803 * time.Second)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	first := e.ring("c").Keys[0]
	if first.HasPrivate || first.state(e.clock.Now().Unix()) != stateRetiring {
		t.Fatalf("set-up: the first key should be retiring without its private half: %+v", first)
	}
	e.mustWrite("keys/c", map[string]any{"rotation_period": 3600, "publish_lead": 360})
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	r := e.ring("c")
	now := e.clock.Now().Unix()
	for i := range r.Keys {
		if needsPrivate(r.Keys, i, r.schedule(), now) && !r.Keys[i].HasPrivate {
			t.Fatalf("key %s counts as able to sign, but its private half is gone", r.Keys[i].KID)
		}
	}
	resp, err := e.write("keys/c/rollback", nil)
	expect400(t, resp, err, "rollback", "already deleted")
}

// Found by the model test: after publish_lead was raised, a rotate without
// force kept the pending key's earlier activation but recorded the new
// lead on it, and the ring's own consistency check refused the write (a
// 500). The key keeps the lead it was scheduled with.
func TestDefectRotateAfterRaisingLead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt"})
	e.mustWrite("keys/b", nil)
	at := e.read("keys/b").Data["next_rotation"].(int64)
	e.clock.Advance(2 * time.Second)
	e.mustWrite("keys/b", map[string]any{"publish_lead": "48h"})
	resp := e.mustWrite("keys/b/rotate", nil)
	if got := resp.Data["activates_at"].(int64); got != at {
		t.Fatalf("a rotate moved the scheduled activation from %d to %d", at, got)
	}
}

// A standby signs with a ring's last key long after the last high-water
// mark the active node stored; the clock then steps back and the active
// node restarts, resuming from that older mark, and stocks a successor that
// retires the key at its own, earlier, time. The key may then leave the
// JWKS before the token expires, but by no more than the interval the
// restart lost (docs/invariants.md, Time); a maintenance pass that stored
// the mark before the step loses nothing. Found by the model test
// (testdata/rapid/regressions/standby-token-before-restart.fail).
func TestDefectRestartAfterStepBackLosesOnlyTheUnstoredInterval(t *testing.T) {
	t.Parallel()
	for _, stored := range []bool{false, true} {
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"issuer": "https://x.example/v1/jwt"})
		e.mustWrite("keys/a", map[string]any{"algorithm": "EdDSA", "rotation_period": 600, "publish_lead": 1800, "verification_ttl": 120})
		e.mustWrite("keys/a/rotate", map[string]any{"force": true})
		e.mustWrite("roles/r1", map[string]any{"key": "a", "audiences": "api", "max_ttl": 60, "ttl": 60})
		standby := e.restart()
		e.clock.Advance(2 * time.Hour)
		if stored {
			if err := e.maintain(); err != nil {
				t.Fatal(err)
			}
		}
		tok := standby.mustWrite("sign/r1", nil)
		signedAt := e.clock.Now().Unix()
		e.clock.Advance(-time.Hour)
		active := e.restart()
		if _, err := active.b.load(context.Background(), active.storage); err != nil {
			t.Fatal(err)
		}
		resumed := active.b.now()
		if err := active.maintain(); err != nil {
			t.Fatal(err)
		}
		var removeAt int64
		for _, k := range active.ring("a").Keys {
			if k.KID == tok.Data["kid"] {
				removeAt = k.RemoveAt
			}
		}
		exp := tok.Data["expires_at"].(int64)
		short := exp - (removeAt - clockSkewSeconds)
		t.Logf("mark stored before the step: %v; resumed %ds before the signing; the key leaves %ds before the token's expiry + 60s", stored, signedAt-resumed, max(short, 0))
		if removeAt == 0 {
			t.Fatal("the key was not retired: the case did not happen")
		}
		if short > signedAt-resumed {
			t.Fatalf("the key leaves %ds early, more than the %ds the restart lost", short, signedAt-resumed)
		}
		if stored && short > 0 {
			t.Fatalf("with the mark stored, the key still leaves %ds early", short)
		}
		if !stored && short <= 0 {
			t.Fatal("without the mark stored, the key kept its overlap: the case proves nothing")
		}
	}
}

// Revoking a retiring key when the ring already held maxTombstones
// tombstones answered 500 ("refusing to rewrite the past: kid ... (retiring)
// would vanish"): the cap forgot tombstones in chain order, so the key just
// revoked, the oldest by activation, was forgotten in the write that revoked
// it and the transition check refused its own operation. Found by random
// operations on a real Vault (a revoke is never refused: docs/invariants.md).
// The cap now forgets the oldest revocations of earlier writes first.
func TestDefectRevokeRetiringPastTombstoneCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 2})
	e.setupRing("k", "ES256", map[string]any{"rotation_period": 10, "publish_lead": 5, "verification_ttl": 80})
	e.clock.Advance(12 * time.Second) // the first key retires at 10
	now := e.clock.Now().Unix()
	r := e.ring("k")
	retiring := ""
	for i := range r.Keys {
		if r.Keys[i].state(now) == stateRetiring {
			retiring = r.Keys[i].KID
		}
	}
	if retiring == "" {
		t.Fatalf("no retiring key at +12 s:%s", keysSummary(r.Keys))
	}
	for i := 0; i < maxTombstones+1; i++ {
		r := e.ring("k")
		next := r.Keys[liveAfter(r.Keys, activeIndex(r.Keys, now))].KID
		e.mustWrite("keys/k/revoke", map[string]any{"kid": next})
	}
	if n := len(e.revokedKIDs("k")); n != maxTombstones {
		t.Fatalf("%d tombstones after %d revocations, want the cap %d", n, maxTombstones+1, maxTombstones)
	}
	resp, err := e.write("keys/k/revoke", map[string]any{"kid": retiring})
	if err != nil || resp.IsError() {
		t.Fatalf("revoking the retiring key %s with %d tombstones held: err=%v resp=%v", retiring, maxTombstones, err, respErr(resp))
	}
	got := e.revokedKIDs("k")
	if len(got) != maxTombstones || !slices.Contains(got, retiring) {
		t.Fatalf("after the revocation: %d tombstones, %s among them: %v; want %d including it", len(got), retiring, slices.Contains(got, retiring), maxTombstones)
	}
}

// Revoking the only pending key made stocking plan its replacement a full
// lead from now, which pulled the active key's retirement in and started the
// chain early; with many keys still published (forced rotations keep each
// for its overlap), that chain's stock took the ring past 40 published keys,
// a bound revocations cannot be refused for. Found by the model test's
// revocation storms. The replacement now takes the revoked key's slot (no
// earlier than a full lead from now): no other key's schedule moves.
func TestDefectRevokeLastPendingKeepsItsSlot(t *testing.T) {
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	// A shorter period leaves the pending key at its slot an hour away,
	// later than the active key's activation plus the new period.
	e.mustWrite("keys/k", map[string]any{"rotation_period": "20m"})
	now := e.clock.Now().Unix()
	r := e.ring("k")
	a, p := activeAndPending(r.Keys, now)
	if a < 0 || p < 0 || liveAfter(r.Keys, p) >= 0 {
		t.Fatalf("want one active and exactly one pending key:%s", keysSummary(r.Keys))
	}
	activeKID, retire, slot := r.Keys[a].KID, r.Keys[a].RetireAt, r.Keys[p].ActivateAt
	e.mustWrite("keys/k/revoke", map[string]any{"kid": r.Keys[p].KID})
	r = e.ring("k")
	a, p = activeAndPending(r.Keys, now)
	if r.Keys[a].KID != activeKID || r.Keys[a].RetireAt != retire {
		t.Fatalf("the active key %s retires at %d after the revocation, was %d:%s", activeKID, r.Keys[a].RetireAt, retire, keysSummary(r.Keys))
	}
	if p < 0 || r.Keys[p].ActivateAt != slot {
		t.Fatalf("the replacement activates at %v, want the revoked key's slot %d:%s", func() any {
			if p < 0 {
				return "never"
			}
			return r.Keys[p].ActivateAt
		}(), slot, keysSummary(r.Keys))
	}
}

// Found by the model test: forced rotations of a ring with a long
// verification_ttl leave many keys published for it; a write then shortened
// the period, and the bounds check passed it because the old keys leave
// before the new schedule's pending keys arrive. A revocation of the active
// key, which is never refused, restarted the schedule at once and the ring
// published 43 keys, above the bound of 40. Writes now leave room for that
// revocation: the write is refused, or the revocation keeps the ring within
// the bound (docs/invariants.md, bounds).
func TestDefectRevocationRestartsScheduleWithinKeyBound(t *testing.T) {
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
	// The active key signs for a day; each forced key stays published for
	// 21.6 hours after it retires, less than that day.
	e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": "24h", "publish_lead": 12, "verification_ttl": 77760})
	forced := 0
	for range maxRingKeys {
		resp, err := e.write("keys/k/rotate", map[string]any{"force": true})
		if err != nil || resp.IsError() {
			break
		}
		forced++
	}
	if forced < 25 {
		t.Fatalf("set-up: only %d forced rotations went through; the ring must hold many retiring keys", forced)
	}
	served := func() int {
		var doc struct{ Keys []any }
		if err := json.Unmarshal(e.read("jwks/k").Data[logical.HTTPRawBody].([]byte), &doc); err != nil {
			t.Fatal(err)
		}
		return len(doc.Keys)
	}
	resp, err := e.write("keys/k", map[string]any{"rotation_period": 15, "publish_lead": 2, "verification_ttl": 61})
	if err != nil && err != logical.ErrInvalidRequest {
		t.Fatal(err)
	}
	if resp != nil && resp.IsError() {
		if msg := respErr(resp); !strings.Contains(msg, "above the limit of 40") {
			t.Fatalf("the shorter period was refused for another reason: %s", msg)
		}
		return
	}
	e.mustWrite("keys/k/rotate", map[string]any{"revoke_active": true})
	if n := served(); n > maxRingKeys {
		t.Fatalf("after revoking the active key ring k publishes %d keys, above %d:%s", n, maxRingKeys, keysSummary(e.ring("k").Keys))
	}
}
