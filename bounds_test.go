package jwtrotor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of the bounds (bounds.go) against what maintenance really does.

// boundsCase is a ring set up through the API, then left to maintenance.
type boundsCase struct {
	name    string
	alg     string
	period  int64
	lead    int64
	vttl    int64
	prepare func(e *testEnv)
}

var boundsCases = []boundsCase{
	{name: "short period", alg: "EdDSA", period: 30, lead: 20, vttl: 90},
	{name: "overlap barely past a minute", alg: "ES256", period: 60, lead: 10, vttl: 61},
	{name: "shortest period", alg: "EdDSA", period: 10, lead: 2, vttl: 61},
	{name: "lead longer than the period", alg: "ES256", period: 45, lead: 100, vttl: 200},
	{name: "long overlap", alg: "EdDSA", period: 120, lead: 30, vttl: 300},
	{name: "period far above lead and overlap", alg: "EdDSA", period: 400, lead: 20, vttl: 61},
	{name: "lead of many periods", alg: "EdDSA", period: 14, lead: 76, vttl: 61},
	{name: "after forced rotations", alg: "EdDSA", period: 30, lead: 20, vttl: 90, prepare: func(e *testEnv) {
		for range 3 {
			e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		}
	}},
	{name: "after revoking the pending key", alg: "EdDSA", period: 30, lead: 20, vttl: 90, prepare: func(e *testEnv) {
		e.mustWrite("keys/k/revoke", map[string]any{"kid": e.ring("k").Keys[1].KID})
	}},
	{name: "after an algorithm change", alg: "EdDSA", period: 30, lead: 20, vttl: 90, prepare: func(e *testEnv) {
		e.mustWrite("keys/k", map[string]any{"algorithm": "ES256"})
	}},
	{name: "deleted", alg: "ES256", period: 30, lead: 20, vttl: 90, prepare: func(e *testEnv) {
		e.clock.Advance(40 * time.Second)
		if resp, err := e.do(logical.DeleteOperation, "keys/k", nil); err != nil || (resp != nil && resp.IsError()) {
			e.t.Fatalf("delete: %v %s", err, respErr(resp))
		}
	}},
}

// TestBoundsPeakIsExact: peak (what a ring will publish at most, from now
// on, if no operation intervenes) is exactly the most keys maintenance then
// publishes at once, and the bytes it counts are exactly those keys, at their
// real size if they exist and at jwkSize if they do not yet. Maintenance runs
// every second, which stocks keys as early as it can, the case peak assumes;
// peak is checked from every second of the first steady window.
func TestBoundsPeakIsExact(t *testing.T) {
	t.Parallel()
	for _, c := range boundsCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
			e.mustWrite("keys/k", map[string]any{"algorithm": c.alg, "rotation_period": c.period, "publish_lead": c.lead, "verification_ttl": c.vttl})
			e.mustWrite("keys/k/rotate", map[string]any{"force": true})
			if c.prepare != nil {
				c.prepare(e)
			}
			steady := 2*c.period + c.lead + 2*maintenanceTickSeconds + c.vttl
			checked, horizon := steady, 3*steady+c.vttl
			start := e.clock.Now().Unix()
			var rings []*ringEntry
			for s := int64(0); s <= checked+horizon; s++ {
				if s > 0 {
					e.clock.Advance(time.Second)
					if err := e.maintain(); err != nil {
						t.Fatal(err)
					}
				}
				// A deleted ring is forgotten once its last key has left.
				r, err := readRing(context.Background(), e.storage, "k")
				if err != nil {
					t.Fatal(err)
				}
				if r == nil {
					r = &ringEntry{Algorithm: c.alg, DeletedAt: 1}
				}
				rings = append(rings, r)
			}
			estimate := jwkSize(rings[len(rings)-1].Algorithm, rings[len(rings)-1].RSABits) + 1
			// Each second's published keys, with kids numbered, so that the
			// check below (every second against every later one) is cheap.
			type pubKey struct{ id, size int }
			ids := map[string]int{}
			published := make([][]pubKey, len(rings))
			for si, r := range rings {
				for i := range r.Keys {
					k := &r.Keys[i]
					if _, ok := ids[k.KID]; !ok {
						ids[k.KID] = len(ids)
					}
					if k.published(start + int64(si)) {
						published[si] = append(published[si], pubKey{ids[k.KID], len(k.PublicJWK) + 1})
					}
				}
			}
			for ti := int64(0); ti <= checked; ti++ {
				now := start + ti
				existing := make([]bool, len(ids))
				for _, k := range rings[ti].Keys {
					existing[ids[k.KID]] = true
				}
				wantKeys, wantBytes := 0, 0
				for si := ti; si < int64(len(rings)); si++ {
					n, b := 0, 0
					for _, k := range published[si] {
						n++
						if existing[k.id] {
							b += k.size
						} else {
							b += estimate
						}
					}
					wantKeys, wantBytes = max(wantKeys, n), max(wantBytes, b)
				}
				gotKeys, gotBytes := peak(rings[ti].clone(), now)
				if gotKeys != wantKeys || gotBytes != wantBytes {
					t.Fatalf("at +%ds: peak = %d keys, %d bytes; maintenance then publishes at most %d keys, %d bytes", ti, gotKeys, gotBytes, wantKeys, wantBytes)
				}
			}
		})
	}
}

// TestBoundsRingProjection: a ring's projection is its steady schedule with
// a key to spare (pending keys up to the lead plus two ticks, the active key,
// retiring keys for the overlap, one more), never below what maintenance
// really publishes at once plus one.
func TestBoundsRingProjection(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		period, lead, vttl int64
		want               int
	}{
		// ceil((lead+120)/period) + 1 + 1 + ceil(vttl/period) + 1
		{30, 30, 90, 5 + 1 + 1 + 3 + 1}, // both divisions exact
		{30, 31, 91, 6 + 1 + 1 + 4 + 1}, // both one past
		{60, 10, 61, 3 + 1 + 1 + 2 + 1}, // (130/60 -> 3, 61/60 -> 2)
		{10, 2, 61, 13 + 1 + 1 + 7 + 1}, // (122/10 -> 13, 61/10 -> 7)
		{3600, 600, 7200, 1 + 1 + 1 + 2 + 1},
		{7, 1, 70, 18 + 1 + 1 + 10 + 1}, // (121/7 -> 18, 70/7 -> 10)
	} {
		r := &ringEntry{RotationPeriod: c.period, PublishLead: c.lead, VerificationTTL: c.vttl}
		if got := ringProjection(r); got != c.want {
			t.Errorf("ringProjection(period %d, lead %d, overlap %d) = %d, want %d", c.period, c.lead, c.vttl, got, c.want)
		}
	}
	for _, c := range boundsCases[:5] {
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
		e.mustWrite("keys/k", map[string]any{"algorithm": c.alg, "rotation_period": c.period, "publish_lead": c.lead, "verification_ttl": c.vttl})
		e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		most := 0
		e.simulate(time.Duration(3*(2*c.period+c.lead+2*maintenanceTickSeconds+c.vttl))*time.Second, time.Second, time.Second, func(now time.Time) {
			most = max(most, e.publishedCount("k"))
		})
		if p := ringProjection(e.ring("k")); most+1 > p {
			t.Errorf("%s: maintenance published %d keys at once; the projection %d leaves no key to spare", c.name, most, p)
		}
	}
}

// TestBoundsLargestKey: the largest key a ring publishes or will make
// counts live keys of every algorithm, not revoked or removed ones.
func TestBoundsLargestKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	es := jwkSize("ES256", 0) + 1
	if got := largestKey(e.ring("k"), e.clock.Now().Unix()); got != es {
		t.Fatalf("ES256 ring: largest key %d, want jwkSize %d", got, es)
	}
	// An RSA ring's algorithm change keeps the RSA keys published: they are
	// the largest until they leave.
	e2 := newEnv(t)
	e2.setupRing("r", "RS256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h", "rsa_bits": 2048})
	e2.mustWrite("keys/r", map[string]any{"algorithm": "EdDSA"})
	r := e2.ring("r")
	now := e2.clock.Now().Unix()
	rsa := 0
	var last int64
	for i := range r.Keys {
		if k := &r.Keys[i]; k.Alg == "RS256" {
			rsa = max(rsa, len(k.PublicJWK)+1)
			last = max(last, k.removeAt())
		}
	}
	if got := largestKey(r, now); got != rsa || rsa <= jwkSize("EdDSA", 0)+1 {
		t.Fatalf("after RS256 -> EdDSA: largest key %d, want the RSA key's %d", got, rsa)
	}
	// Once every RSA key is revoked, or past its removal, only EdDSA counts.
	revoked := r.clone()
	for i := range revoked.Keys {
		if revoked.Keys[i].Alg == "RS256" {
			revoked.Keys[i].RevokedAt = now
		}
	}
	ed := jwkSize("EdDSA", 0) + 1
	if got := largestKey(revoked, now); got != max(ed, largestOf(revoked, "EdDSA")) {
		t.Fatalf("RSA keys revoked: largest key %d, want an EdDSA size", got)
	}
	if last == forever {
		t.Fatal("the RSA keys never leave the JWKS after the algorithm change")
	}
	if got := largestKey(r, last); got != max(ed, largestOf(r, "EdDSA")) {
		t.Fatalf("at the last RSA key's removal (%d): largest key %d, want an EdDSA size", last, got)
	}
	if got := largestKey(r, last-1); got != rsa {
		t.Fatalf("a second before the last RSA key's removal: largest key %d, want %d", got, rsa)
	}
}

func largestOf(r *ringEntry, alg string) int {
	n := 0
	for i := range r.Keys {
		if r.Keys[i].Alg == alg {
			n = max(n, len(r.Keys[i].PublicJWK)+1)
		}
	}
	return n
}

// TestBoundsCheckAtTheLimits: checkBounds accepts a ring that publishes
// exactly maxRingKeys keys and a mount whose reserves come to exactly
// maxJWKSBytes, and refuses one key or one byte more, naming the field, the
// numbers and when to retry.
func TestBoundsCheckAtTheLimits(t *testing.T) {
	t.Parallel()
	const now = int64(1_000_000)
	// A deleted ring publishes its remaining keys and reserves exactly
	// their bytes: keys of chosen sizes make exact totals.
	deleted := func(name string, sizes ...int) *ringEntry {
		r := &ringEntry{Name: name, Algorithm: "EdDSA", RotationPeriod: 3600, PublishLead: 600, VerificationTTL: 7200, DeletedAt: now - 10}
		for i, n := range sizes {
			r.Keys = append(r.Keys, signingKey{
				KID: fmt.Sprintf("%s-%d", name, i), Alg: "EdDSA", PublicJWK: []byte(strings.Repeat("x", n-1)),
				PublishAt: now - 100, ActivateAt: now - 90, RetireAt: now - 10, RemoveAt: now + 100 + int64(i), Overlap: 7200,
			})
		}
		return r
	}
	snap := &snapshot{rings: map[string]*ringEntry{"a": deleted("a", 30000)}}
	if err := checkBounds(snap, deleted("b", maxJWKSBytes-30000), now, "field"); err != nil {
		t.Fatalf("a mount at exactly %d bytes refused: %v", maxJWKSBytes, err)
	}
	msg := errText(checkBounds(snap, deleted("b", maxJWKSBytes-30000+1), now, "field"))
	for _, want := range []string{"field: ", `ring "b"`, fmt.Sprintf("%d bytes", maxJWKSBytes-30000+1), fmt.Sprintf("reach %d bytes", maxJWKSBytes+1), fmt.Sprintf("above the %d-byte bound", maxJWKSBytes), "retry after " + time.Unix(now+100, 0).UTC().Format(time.RFC3339)} {
		if !strings.Contains(msg, want) {
			t.Fatalf("a mount one byte past the bound: message %q does not say %q", msg, want)
		}
	}

	// Keys: exactly maxRingKeys published at once, then one more.
	sizes := make([]int, maxRingKeys)
	for i := range sizes {
		sizes[i] = 100
	}
	empty := &snapshot{rings: map[string]*ringEntry{}}
	if err := checkBounds(empty, deleted("c", sizes...), now, "force"); err != nil {
		t.Fatalf("a ring publishing exactly %d keys refused: %v", maxRingKeys, err)
	}
	msg = errText(checkBounds(empty, deleted("c", append(sizes, 100)...), now, "force"))
	for _, want := range []string{"force: ", `ring "c"`, fmt.Sprintf("would publish %d keys", maxRingKeys+1), fmt.Sprintf("limit of %d", maxRingKeys), "retry after " + time.Unix(now+100, 0).UTC().Format(time.RFC3339)} {
		if !strings.Contains(msg, want) {
			t.Fatalf("a ring one key past the bound: message %q does not say %q", msg, want)
		}
	}
}

// TestBoundsReserve: a live ring reserves the larger of its projection at
// its largest key size and its peak plus one key; a deleted ring what it
// still publishes.
func TestBoundsReserve(t *testing.T) {
	t.Parallel()
	const now = int64(1_000_000)
	gone := &ringEntry{Name: "d", Algorithm: "EdDSA", RotationPeriod: 3600, PublishLead: 600, VerificationTTL: 7200, DeletedAt: now - 10, Keys: []signingKey{
		{KID: "a", Alg: "EdDSA", PublicJWK: []byte(strings.Repeat("x", 99)), PublishAt: now - 100, ActivateAt: now - 90, RetireAt: now - 10, RemoveAt: now + 100, Overlap: 7200},
		{KID: "b", Alg: "EdDSA", PublicJWK: []byte(strings.Repeat("x", 149)), PublishAt: now - 100, ActivateAt: now - 90, RetireAt: now - 10, RemoveAt: now + 200, Overlap: 7200},
		{KID: "c", Alg: "EdDSA", PublishAt: now - 100, ActivateAt: now - 90, RevokedAt: now - 5},
	}}
	if got := reserve(gone, now); got != 100+150 {
		t.Fatalf("deleted ring: reserve %d, want the 250 bytes it still publishes", got)
	}

	// A steady ES256 ring: its projection (ceil(720/3600) + 1 + 1 +
	// ceil(7201/3600) + 1 = 7 keys) is more than it publishes now.
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "7201s"})
	r, at := e.ring("k"), e.clock.Now().Unix()
	es := jwkSize("ES256", 0) + 1
	if keys, bytes := peak(r, at); bytes+es >= 7*es {
		t.Fatalf("set-up: peak %d keys, %d bytes, want it below the projection", keys, bytes)
	}
	if got := reserve(r, at); got != 7*es {
		t.Fatalf("steady ES256 ring: reserve %d, want 7 x %d", got, es)
	}
	// A trusted key adds its bytes and a separator until it expires, and
	// nothing from its expiry on.
	trusted := r.clone()
	trusted.Trusted = append(trusted.Trusted, trustedKey{KID: "old-1", Alg: "ES256", PublicJWK: []byte(strings.Repeat("x", 99)), AddedAt: at - 10, ExpiresAt: at + 100})
	if got := reserve(trusted, at+99); got != 7*es+100 {
		t.Fatalf("with a trusted key of 99 bytes a second before it expires: reserve %d, want 7 x %d + 100", got, es)
	}
	if got := reserve(trusted, at+100); got != 7*es {
		t.Fatalf("with a trusted key that expires now: reserve %d, want 7 x %d", got, es)
	}

	// Forced rotations keep a key each published for the overlap: the
	// peak, plus one key, passes the projection.
	e2 := newEnv(t)
	e2.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
	e2.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": 10, "publish_lead": 2, "verification_ttl": 61})
	for range 12 {
		e2.mustWrite("keys/k/rotate", map[string]any{"force": true})
	}
	r2, at2 := e2.ring("k"), e2.clock.Now().Unix()
	largest := largestKey(r2, at2)
	_, bytes := peak(r2, at2)
	if bytes+largest <= ringProjection(r2)*largest {
		t.Fatalf("set-up: peak %d bytes plus %d does not pass the projection %d x %d", bytes, largest, ringProjection(r2), largest)
	}
	// The peak is the higher of the ring's own and the one after a
	// revocation of its active key, which is never refused.
	_, withRevocation := peakWithRevocation(r2, at2)
	if withRevocation < bytes {
		t.Fatalf("the peak with a revocation, %d bytes, is below the peak %d", withRevocation, bytes)
	}
	if got := reserve(r2, at2); got != withRevocation+largest {
		t.Fatalf("after forced rotations: reserve %d, want the peak %d plus one key %d", got, withRevocation, largest)
	}
}

// peak is an upper bound of what a ring really publishes: a ring left to its
// schedule, with maintenance every minute, never publishes more keys at once
// than peak computed at its creation, and peak never exceeds the schedule's
// own projection (so the bounds refuse no write a plain schedule needs).
func TestPeakBoundsWhatTheScheduleChanges(t *testing.T) {
	t.Parallel()
	cases := []struct{ period, lead, overlap string }{
		{"10s", "10s", "90s"},
		{"10s", "30s", "70s"},
		{"1m", "30s", "5m"},
		{"10m", "10m", "30m"},
		{"1h", "1h", "8h"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%s-%s", c.period, c.lead, c.overlap), func(t *testing.T) {
			e := newEnv(t)
			e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
			e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": c.period, "publish_lead": c.lead, "verification_ttl": c.overlap})
			r := e.ring("k")
			want, _ := peak(r, e.clock.Now().Unix())
			if want > ringProjection(r) {
				t.Fatalf("peak %d is above the schedule's projection %d", want, ringProjection(r))
			}
			seen := 0
			period := time.Duration(r.RotationPeriod) * time.Second
			e.simulate(12*period+time.Hour, min(period/2, 20*time.Second), time.Minute, func(time.Time) {
				seen = max(seen, e.publishedCount("k"))
			})
			if seen > want {
				t.Fatalf("the ring published %d keys at once, above its peak %d", seen, want)
			}
			if seen < 3 {
				t.Fatalf("the ring published at most %d keys (the test would prove little)", seen)
			}
			t.Logf("peak %d, projection %d, most published %d", want, ringProjection(r), seen)
		})
	}
}

// TestBoundsPlannedKeyAtItsEstimate: a key planned but not yet made counts
// in peak at its size estimate and a separator (jwkSize+1), never less, so a
// write checked before its keys are made cannot pass the bounds with keys
// larger than it was checked with: a ring's peak with its new key planned is
// its peak with the key made plus exactly the estimate's slack over the real
// JWK.
func TestBoundsPlannedKeyAtItsEstimate(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{"ES256", "EdDSA", "RS256"} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t)
			e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
			e.mustWrite("keys/k", map[string]any{"algorithm": alg, "rotation_period": 60, "publish_lead": 20, "verification_ttl": 120})
			// Forced rotations keep their outgoing keys published for the
			// overlap, so that the ring publishes the most keys now, while
			// the key planned next is in the JWKS.
			for range 4 {
				e.mustWrite("keys/k/rotate", map[string]any{"force": true})
			}
			now := e.clock.Now().Unix()
			// What a forced rotation checks before its keys are made (runOp).
			planned := e.ring("k").clone()
			rotateOp(planned, now, true, false, "")
			if planStock(planned, now) == 0 {
				t.Fatal("the forced rotation planned no key (the test would prove nothing)")
			}
			settle(planned, now)
			made := planned.clone()
			if _, err := materialize(made, e.b.keys); err != nil {
				t.Fatal(err)
			}
			slack := 0
			for i := range planned.Keys {
				if planned.Keys[i].planned() {
					slack += jwkSize(alg, planned.RSABits) - len(made.Keys[i].PublicJWK)
				}
			}
			_, plannedBytes := peak(planned, now)
			_, madeBytes := peak(made, now)
			if plannedBytes != madeBytes+slack {
				t.Fatalf("peak with the key planned: %d bytes; made: %d bytes, and the estimate is %d bytes above the real keys: want %d",
					plannedBytes, madeBytes, slack, madeBytes+slack)
			}
		})
	}
}

// TestBoundsTrustedKeyAtItsSize: a trusted key counts in peak, while it is
// published, as one key of exactly its JWK's size and a separator, so the
// mount's byte bound is as exact with an adopted issuer's old keys as with
// the ring's own.
func TestBoundsTrustedKeyAtItsSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
	e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": 60, "publish_lead": 20, "verification_ttl": 120})
	now := e.clock.Now().Unix()
	keysBefore, bytesBefore := peak(e.ring("k"), now)
	// Published for longer than peak looks ahead: it adds to every instant.
	e.mustWrite("keys/k/trust", map[string]any{
		"jwk":        publicJWKMap(t, newTestKey(t, "P-256").Public(), "old-1", "ES256", nil),
		"expires_at": now + 30*86400,
	})
	r := e.ring("k")
	if len(r.Trusted) != 1 {
		t.Fatalf("the ring trusts %d keys, want 1", len(r.Trusted))
	}
	keysAfter, bytesAfter := peak(r, now)
	if want := bytesBefore + len(r.Trusted[0].PublicJWK) + 1; keysAfter != keysBefore+1 || bytesAfter != want {
		t.Fatalf("peak with a trusted key of %d bytes: %d keys, %d bytes; want %d keys, %d bytes",
			len(r.Trusted[0].PublicJWK), keysAfter, bytesAfter, keysBefore+1, want)
	}
}

// TestBoundsSweepEndsBeforeStarts: a span ends before its end instant, so a
// key that leaves the JWKS at the instant another enters is never counted
// with it: a chain of back-to-back spans publishes one key at a time, however
// the sort meets them.
func TestBoundsSweepEndsBeforeStarts(t *testing.T) {
	t.Parallel()
	const now = int64(1000)
	var spans []span
	for i := int64(0); i < 64; i++ {
		spans = append(spans, span{now + 10*i, now + 10*(i+1), 100 + int(i)})
	}
	// Shuffled deterministically, so the order in is not the order out.
	for i := range spans {
		j := (i * 37) % len(spans)
		spans[i], spans[j] = spans[j], spans[i]
	}
	if keys, bytes := sweep(spans, now); keys != 1 || bytes != 163 {
		t.Fatalf("64 back-to-back spans: sweep = %d keys, %d bytes; want 1 key, 163 bytes (the largest)", keys, bytes)
	}
	// One span overlapping the chain by a second at each end counts twice
	// only where it overlaps.
	spans = append(spans, span{now + 99, now + 201, 1000})
	if keys, bytes := sweep(spans, now); keys != 2 || bytes != 1000+120 {
		t.Fatalf("with an overlapping span: sweep = %d keys, %d bytes; want 2 keys, %d bytes", keys, bytes, 1000+120)
	}
}
