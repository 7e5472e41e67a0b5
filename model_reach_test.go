package jwtrotor

import (
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// The actions of the "reach" set drive rings to where defects have lived,
// instead of waiting for chance to get there: storms of revocations up to
// the tombstone cap and past it, storms of forced rotations up to the key
// and JWKS bounds and past them, and time stepped to exactly a key's
// timestamp or one second either side of it. What they learn of a ring
// they learn through the API (keys/<name>), as an operator would.

var modelReachStats struct {
	tombstoneCap  atomic.Int64 // a ring read with maxTombstones tombstones
	revokeAtCap   atomic.Int64 // a key revoked while the ring held them
	forced        atomic.Int64 // forced rotations drawn by storms
	forcedBounded atomic.Int64 // of them, refused for a bound
	keyPeak       atomic.Int64 // most keys one ring served at once
	atTimestamp   atomic.Int64 // steps to a key timestamp, or one second off
	mustSign      atomic.Int64 // sign requests the docs say must succeed
	mustSignHeld  atomic.Int64 // of them, on a node whose schedule is held
}

// apiKey is one entry of signing_keys in a read of keys/<name>.
type apiKey struct {
	kid, state                                string
	publish, activate, retire, remove, revoke int64
}

// apiRing is a read of keys/<name>: the settings the model's predictions
// need and the keys in activation order.
type apiRing struct {
	period, lead, ttl int64
	keys              []apiKey
}

// apiKeys reads ring's keys through the API; nil if it has none.
func (m *model) apiKeys(ring string) []apiKey {
	if r := m.apiRing(ring); r != nil {
		return r.keys
	}
	return nil
}

// apiRing reads ring through the API; nil if there is no such ring.
func (m *model) apiRing(ring string) *apiRing {
	resp, out := m.do(m.a, logical.ReadOperation, "keys/"+ring, nil)
	if out != ok2xx || resp == nil {
		return nil
	}
	num := func(d map[string]any, f string) int64 { v, _ := d[f].(int64); return v }
	raw, _ := resp.Data["signing_keys"].([]map[string]any)
	r := &apiRing{period: num(resp.Data, "rotation_period"), lead: num(resp.Data, "publish_lead"), ttl: num(resp.Data, "verification_ttl"),
		keys: make([]apiKey, 0, len(raw))}
	for _, k := range raw {
		r.keys = append(r.keys, apiKey{kid: k["kid"].(string), state: k["state"].(string),
			publish: num(k, "publish_at"), activate: num(k, "activate_at"), retire: num(k, "retire_at"),
			remove: num(k, "remove_at"), revoke: num(k, "revoked_at")})
	}
	return r
}

func countState(keys []apiKey, state string) int {
	n := 0
	for _, k := range keys {
		if k.state == state {
			n++
		}
	}
	return n
}

// revokeStorm revokes the next pending key of a ring again and again (each
// revocation is replaced by a new pending key), then revokes one key in a
// drawn state. A revocation of a key the ring lists is never refused
// (docs/invariants.md, bounds), however many tombstones it holds.
func (m *model) revokeStorm(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	n := rapid.IntRange(1, maxTombstones+4).Draw(t, "revocations")
	last := rapid.SampledFrom([]string{stateRetiring, stateActive, statePending, stateRevoked}).Draw(t, "last-state")
	for i := 0; i < n; i++ {
		keys := m.apiKeys(ring)
		kid := ""
		for _, k := range keys {
			if k.state == statePending && kid == "" {
				kid = k.kid
			}
		}
		if kid == "" {
			break
		}
		m.mustRevoke(ring, kid)
	}
	keys := m.apiKeys(ring)
	atCap := countState(keys, stateRevoked) >= maxTombstones
	if atCap {
		modelReachStats.tombstoneCap.Add(1)
	}
	for _, k := range keys {
		if k.state == last {
			m.mustRevoke(ring, k.kid)
			if atCap {
				modelReachStats.revokeAtCap.Add(1)
			}
			return
		}
	}
}

func (m *model) mustRevoke(ring, kid string) {
	resp, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/revoke", map[string]any{"kid": kid})
	if out == bad4xx {
		m.t.Fatalf("revoking %s, listed by keys/%s, was refused: %s", kid, ring, respErr(resp))
	}
	// A storm revokes many keys in one step; a later revocation of the
	// same step may forget this one's tombstone before the checks see it
	// revoked, so its tokens are exempted here.
	if out == ok2xx {
		for _, tok := range m.tokens {
			if tok.ring == ring && tok.kid == kid {
				tok.exempt = true
			}
		}
	}
}

// forceStorm forces rotations of one ring until a bound refuses one or the
// storm ends. A refusal names force and the bound; storage is unchanged
// (do checks it); the ring never serves more than maxRingKeys keys (the
// invariant checks after every step). Forced rotations are not refused
// while the ring is well below the bounds: every ring signs with small keys
// (so the mount's bytes cannot bind) and the ring serves few enough keys
// that the most its schedule could add still leaves room.
func (m *model) forceStorm(t *rapid.T) {
	m.forceStormOf(t, rapid.SampledFrom(modelRings).Draw(t, "ring"))
}

func (m *model) forceStormOf(t *rapid.T, ring string) {
	n := rapid.IntRange(1, maxRingKeys+4).Draw(t, "rotations")
	defer func() {
		served := int64(0)
		for _, k := range m.apiKeys(ring) {
			if k.state != stateRevoked && k.state != stateRemoved {
				served++
			}
		}
		for peak := modelReachStats.keyPeak.Load(); served > peak && !modelReachStats.keyPeak.CompareAndSwap(peak, served); peak = modelReachStats.keyPeak.Load() {
		}
	}()
	for i := 0; i < n; i++ {
		roomy := m.wellBelowBounds(ring)
		modelReachStats.forced.Add(1)
		resp, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/rotate", map[string]any{"force": true})
		if out != bad4xx {
			continue
		}
		msg := respErr(resp)
		bound := strings.Contains(msg, "above the limit") || strings.Contains(msg, "byte bound")
		if !bound {
			return // no such ring, or deleted: not a storm any more
		}
		modelReachStats.forcedBounded.Add(1)
		if !strings.HasPrefix(msg, "force") {
			m.t.Fatalf("a forced rotation refused for a bound does not name force: %s", msg)
		}
		if roomy {
			m.t.Fatalf("a forced rotation of ring %s was refused for a bound while far below it: %s", ring, msg)
		}
		return
	}
}

// wellBelowBounds: the docs' bounds cannot bind a forced rotation of ring.
// Every ring's algorithm makes keys of at most a few hundred bytes, so three
// rings of maxRingKeys keys stay under the mount's byte bound, and the ring
// serves so few keys that twice the most its schedule publishes at once
// ((verification_ttl + publish_lead) / rotation_period + 2 periods of
// stock), plus one forced key, stay within maxRingKeys.
func (m *model) wellBelowBounds(ring string) bool {
	for _, name := range modelRings {
		r := m.ring(name)
		if r == nil {
			continue
		}
		if isRSA(r.Algorithm) || len(r.Trusted) > 0 {
			return false
		}
		for _, k := range r.Keys {
			if isRSA(k.Alg) {
				return false
			}
		}
	}
	r := m.ring(ring)
	if r == nil || r.DeletedAt != 0 || r.RotationPeriod <= 0 {
		return false
	}
	served := 0
	for _, k := range m.apiKeys(ring) {
		if k.state != stateRevoked && k.state != stateRemoved {
			served++
		}
	}
	schedule := (r.VerificationTTL+r.PublishLead)/r.RotationPeriod + 2 + 2*maintenanceTickSeconds/r.RotationPeriod
	return int64(served)+2*schedule+1 <= maxRingKeys/2
}

// atTimestamp moves time to a timestamp of one of a ring's keys, or one
// second either side of it: the instants where off-by-one defects live.
func (m *model) atTimestamp(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	pick := rapid.IntRange(0, 63).Draw(t, "timestamp")
	off := rapid.IntRange(-1, 1).Draw(t, "offset")
	var times []int64
	for _, k := range m.apiKeys(ring) {
		for _, ts := range []int64{k.activate, k.retire, k.remove} {
			if ts != 0 {
				times = append(times, ts)
			}
		}
	}
	if len(times) == 0 {
		return
	}
	target := times[pick%len(times)] + int64(off)
	now := m.a.b.clock.read().Schedule
	if target <= now {
		return
	}
	modelReachStats.atTimestamp.Add(1)
	m.clock.Advance(time.Duration(target-now) * time.Second)
}
