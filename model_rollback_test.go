package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// The model's own account of rollback, the stock maintenance keeps, and
// the trusted-key and clock-step bounds, written from docs/api.md
// (keys/<name>/rollback), docs/lifecycle.md (roll back, maintenance) and
// docs/invariants.md (bounds, time) without calling the plugin's code: it
// learns each ring through keys/<name>, as an operator would, remembers
// which keys took part in a rollback from the answers, and holds the
// plugin to what the docs promise.

var modelOracleStats struct {
	rollbackMust    atomic.Int64 // rollbacks the docs say must succeed
	rollbackOK      atomic.Int64 // rollbacks accepted
	rollbackRefused atomic.Int64 // rollbacks the docs say must be refused
	rollbackEdge    atomic.Int64 // rollbacks sent at a window's last second or its end
	trustPeak       atomic.Int64 // most trusted keys one ring held
	trustCap        atomic.Int64 // trusts sent to a ring holding maxTrustedKeys
	stockChecks     atomic.Int64 // rings whose stock was checked after maintenance
	creeps          atomic.Int64 // forward steps of at most 60 s adding up past it
	restarts        atomic.Int64 // revocations of the active key after a restart storm
}

// rollbackKey names a key for the model's record of rollbacks: its kid and
// when it was published, so a kid imported again into a new ring is a new
// key.
func rollbackKey(ring string, k apiKey) string {
	return fmt.Sprintf("%s|%s|%d", ring, k.kid, k.publish)
}

// rollbackPlan is what the docs say a rollback of a ring must do now.
type rollbackPlan struct {
	must   bool // must succeed; false: must be refused, unless unsure
	unsure bool // the docs leave the outcome to state the API does not show
	why    string
	active apiKey // the key rolled back from
	prev   apiKey // the key rolled back to
	period int64
}

// planRollback predicts a rollback of ring at now from a read of the ring.
// A rollback is allowed only while the key before the active one (revoked
// keys that never signed are skipped) is retiring, neither key took part in
// a rollback, and now is before that key's retire_at + rotation_period,
// with its private half still kept: the API does not show that, so a
// success is predicted only where no rotation_period change since the key
// was published, and no schedule time the active node ever had, can have
// closed the window (a key whose window closed has lost its private half),
// and no revocation since can have made another key the previous one for a
// while (a tombstone forgotten later would hide it).
func (m *model) planRollback(ring string, r *apiRing, now int64) rollbackPlan {
	p := rollbackPlan{period: r.period}
	a := -1
	for i, k := range r.keys {
		if k.state == stateActive {
			a = i
		}
	}
	if a < 0 {
		p.why = "no active key"
		return p
	}
	p.active = r.keys[a]
	if m.rolledBack[rollbackKey(ring, p.active)] {
		p.why = "the active key took part in a rollback"
		return p
	}
	for i := a - 1; i >= 0; i-- {
		k := r.keys[i]
		switch {
		case k.state == stateRevoked && k.revoke <= k.activate:
			continue // revoked while pending: never the previous signer
		case k.state != stateRetiring:
			p.why = "the previous key " + k.kid + " is " + k.state
			return p
		case m.rolledBack[rollbackKey(ring, k)]:
			p.why = "the previous key took part in a rollback"
			return p
		case now >= k.retire+r.period:
			p.why = "the window closed"
			return p
		}
		p.prev = k
		p.must = true
		if m.ringTouched[ring] >= k.publish || m.maxSchedule >= k.retire+r.period {
			p.must, p.unsure = false, true
			p.why = "its private half may be gone"
		}
		if cur := m.ring(ring); cur == nil || cur.DeletedAt != 0 || !m.wellBelowBounds(ring) {
			p.must, p.unsure = false, true
			p.why = "the bounds may refuse it"
		}
		return p
	}
	p.why = "no previous key"
	return p
}

// rollbackChecked sends a rollback of ring and holds the answer to the
// plan: a rollback the docs allow succeeds, restores the previous key until
// its retire_at + rotation_period (the replaced key activates then), moves
// no pending key to before a full lead in the JWKS, and each key leaves the JWKS its overlap
// after it retires (the longest verification_ttl in force while it signs);
// one they forbid is refused naming rollback.
func (m *model) rollbackChecked(ring string) {
	before := m.apiRing(ring)
	now := m.a.b.clock.read().Schedule
	var plan rollbackPlan
	if before != nil {
		plan = m.planRollback(ring, before, now)
	}
	resp, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/rollback", nil)
	if before == nil || out == err5xx {
		return
	}
	switch {
	case out == bad4xx && plan.must:
		m.t.Fatalf("rollback of ring %s from %s to %s at %d (window to %d) was refused: %s",
			ring, plan.active.kid, plan.prev.kid, now, plan.prev.retire+plan.period, respErr(resp))
	case out == ok2xx && !plan.must && !plan.unsure:
		m.t.Fatalf("rollback of ring %s at %d was accepted, but the docs refuse it: %s", ring, now, plan.why)
	case out == bad4xx:
		if !plan.unsure {
			modelOracleStats.rollbackRefused.Add(1)
		}
		if msg := respErr(resp); !strings.HasPrefix(msg, "rollback") {
			m.t.Fatalf("a refused rollback does not name rollback: %s", msg)
		}
		return
	}
	modelOracleStats.rollbackOK.Add(1)
	if plan.must {
		modelOracleStats.rollbackMust.Add(1)
	}
	// A success the model could not predict still obeys the docs.
	if plan.prev.kid == "" {
		m.t.Fatalf("rollback of ring %s at %d succeeded with no retiring previous key: %v", ring, now, resp.Data)
	}
	until := plan.prev.retire + plan.period
	if resp.Data["active_kid"] != plan.prev.kid || resp.Data["pending_kid"] != plan.active.kid || resp.Data["activates_at"] != until {
		m.t.Fatalf("rollback of ring %s answered %v; the docs say active_kid %s, pending_kid %s, activates_at %d (retire_at %d + rotation_period %d)",
			ring, resp.Data, plan.prev.kid, plan.active.kid, until, plan.prev.retire, plan.period)
	}
	m.rolledBack[rollbackKey(ring, plan.prev)] = true
	m.rolledBack[rollbackKey(ring, plan.active)] = true
	after := m.apiRing(ring)
	if after == nil {
		m.t.Fatalf("ring %s cannot be read after its rollback", ring)
	}
	old := map[string]apiKey{}
	for _, k := range before.keys {
		old[k.kid] = k
	}
	for _, k := range after.keys {
		switch {
		case k.kid == plan.prev.kid && (k.state != stateActive || k.retire != until):
			m.t.Fatalf("after rollback of ring %s, %s is %s until %d, not active until %d", ring, k.kid, k.state, k.retire, until)
		case k.kid == plan.active.kid && (k.state != statePending || k.activate != until):
			m.t.Fatalf("after rollback of ring %s, %s is %s from %d, not pending until %d", ring, k.kid, k.state, k.activate, until)
		}
		o, ok := old[k.kid]
		if !ok || k.state == stateRevoked {
			continue
		}
		if k.kid != plan.prev.kid && k.kid != plan.active.kid && k.state == statePending && k.activate < k.publish+after.lead && k.activate != o.activate {
			m.t.Fatalf("rollback of ring %s at %d moved the activation of %s to %d, before it has been published for publish_lead (%d from %d); before %+v, after %+v", ring, now, k.kid, k.activate, after.lead, k.publish, before, after)
		}
		if overlap := max(o.remove-o.retire, after.ttl); o.retire != 0 && k.retire != 0 && k.remove-k.retire > overlap {
			m.t.Fatalf("rollback of ring %s at %d keeps %s published %ds after it retires, more than its overlap %ds (the longest verification_ttl in force while it signs)", ring, now, k.kid, k.remove-k.retire, overlap)
		}
	}
}

// rollbackWindow rolls a ring back at a drawn point of its window: now,
// the window's last second, or its end (the docs: the window ends at
// retire_at + rotation_period), after a rotation that opens
// a window where the ring has none, and then often does what
// defects have followed a rollback with: revoke the key rolled back from or
// to, rotate, or maintain.
func (m *model) rollbackWindow(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	at := rapid.IntRange(-1, 2).Draw(t, "window-offset")
	then := rapid.IntRange(0, 4).Draw(t, "then")
	r := m.apiRing(ring)
	if r == nil {
		return
	}
	now := m.a.b.clock.read().Schedule
	if plan := m.planRollback(ring, r, now); plan.prev.kid == "" && at >= 0 {
		// No key to roll back to: a forced rotation makes the active key
		// the previous one at once, its window a full period from now (a
		// rotation without force may wait for the pending key's lead).
		if _, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/rotate", map[string]any{"force": true}); out != ok2xx {
			return
		}
		// The invariants hold at the rotation's time, before the clock
		// moves to the window's edge.
		m.check(t)
		if r = m.apiRing(ring); r == nil {
			return
		}
		now = m.a.b.clock.read().Schedule
	}
	if plan := m.planRollback(ring, r, now); plan.prev.kid != "" && at >= 0 {
		end := plan.prev.retire + r.period
		// The window's last second (at 0), or its end, where a window one
		// second too long shows (at 1 and 2).
		if target := end - 1 + int64(min(at, 1)); target > now {
			modelOracleStats.rollbackEdge.Add(1)
			m.clock.Advance(time.Duration(target-now) * time.Second)
		}
	}
	m.rollbackChecked(ring)
	keys := m.apiKeys(ring)
	switch then {
	case 1, 2:
		want := map[int]string{1: statePending, 2: stateActive}[then]
		for _, k := range keys {
			if k.state == want {
				m.mustRevoke(ring, k.kid)
				return
			}
		}
	case 3:
		m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/rotate", nil)
	case 4:
		m.maintain(t)
	}
}

// trustStorm trusts fresh public keys in one ring up to the bound of
// maxTrustedKeys and past it, and sometimes follows with a storm of forced
// rotations of the same ring: trusted keys count toward the keys a ring
// publishes at once (docs/invariants.md, bounds). A trust is refused for
// the cap only at the cap.
func (m *model) trustStorm(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	n := rapid.IntRange(1, maxTrustedKeys+2).Draw(t, "trusts")
	force := rapid.Bool().Draw(t, "then-force")
	for i := 0; i < n; i++ {
		r := m.ring(ring)
		if r == nil || r.DeletedAt != 0 {
			return
		}
		held := len(r.Trusted)
		g, err := sharedKeys.get("storm/EdDSA", "EdDSA", 0, m.stormNext%64)
		if err != nil {
			m.t.Fatal(err)
		}
		m.stormNext++
		pub := g.Private.Public()
		tp := thumbprintOfModel(m.t, pub)
		j, _ := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: tp, Algorithm: "EdDSA", Use: "sig"})
		var obj map[string]any
		_ = json.Unmarshal(j, &obj)
		now := m.a.b.clock.read().Schedule
		live := m.liveIDs()
		if held == maxTrustedKeys {
			modelOracleStats.trustCap.Add(1)
		}
		resp, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/trust", map[string]any{"jwk": obj, "expires_at": now + 3600})
		m.checkAdoptOutcome("trust", resp, out, tp, tp, live)
		if out == bad4xx && strings.Contains(respErr(resp), "already trusts") && held < maxTrustedKeys {
			m.t.Fatalf("ring %s holds %d trusted keys, below the limit of %d, and refused one for the limit: %s", ring, held, maxTrustedKeys, respErr(resp))
		}
		if out == ok2xx {
			for peak := modelOracleStats.trustPeak.Load(); int64(held+1) > peak && !modelOracleStats.trustPeak.CompareAndSwap(peak, int64(held+1)); peak = modelOracleStats.trustPeak.Load() {
			}
		}
	}
	if force {
		m.forceStormOf(t, ring)
	}
}

// clockCreep steps the wall clock forward several times by at most 60 s,
// reading the clock between steps, until the steps add up past 60 s: the
// docs hold forward steps beyond 60 s in total, not per step (checkClock
// then finds the schedule within the tolerance of real time).
func (m *model) clockCreep(t *rapid.T) {
	steps := rapid.IntRange(2, 4).Draw(t, "steps")
	total := time.Duration(0)
	for i := 0; i < steps; i++ {
		d := time.Duration(rapid.IntRange(20, 60).Draw(t, "step-seconds")) * time.Second
		m.clock.Step(d)
		m.jump += d
		total += d
		m.checkClock(m.a)
		m.checkClock(m.b)
	}
	if total > time.Minute {
		modelOracleStats.creeps.Add(1)
	}
}

// checkStock: after a maintenance pass at now, every activation slot up to
// now + publish_lead + two ticks (120 s) has a published key
// (docs/lifecycle.md, maintenance): the slot after a ring's last live key
// lies beyond that horizon.
func (m *model) checkStock(now int64) {
	for _, name := range modelRings {
		if cur := m.ring(name); cur == nil || cur.DeletedAt != 0 {
			continue
		}
		r := m.apiRing(name)
		if r == nil {
			continue
		}
		last := int64(-1)
		for _, k := range r.keys {
			if k.state != stateRevoked && k.state != stateRemoved {
				last = k.activate
			}
		}
		if last < 0 {
			continue
		}
		modelOracleStats.stockChecks.Add(1)
		if horizon := now + r.lead + 2*60; last+r.period <= horizon {
			m.t.Fatalf("after maintenance at %d, ring %s's last key activates at %d: the slot %d is not stocked, though the docs stock every slot to %d (publish_lead %d + 120 s)",
				now, name, last, last+r.period, horizon, r.lead)
		}
	}
}

// touching returns what records, once a request succeeded (or failed on an
// injected fault), in ringTouched if it may have changed its ring's
// rotation_period (a ring write or import, or a ring deleted or made anew
// under the name) or revoked one of the ring's keys.
func (m *model) touching(path string, op logical.Operation, data map[string]any) func() {
	none := func() {}
	parts := strings.Split(path, "/")
	if op == logical.ReadOperation || parts[0] != "keys" || len(parts) < 2 {
		return none
	}
	ring := parts[1]
	period := func() int64 {
		if r := m.ring(ring); r != nil && r.DeletedAt == 0 {
			return r.RotationPeriod
		}
		return -1
	}
	switch {
	case len(parts) == 2 || parts[2] == "import":
		before := period()
		return func() {
			if period() != before {
				m.ringTouched[ring] = m.maxSchedule
			}
		}
	case parts[2] == "revoke" || (parts[2] == "rotate" && data["revoke_active"] == true):
		return func() { m.ringTouched[ring] = m.maxSchedule }
	}
	return none
}

// restartStorm sets a ring up as the bound's last defect needed: a day's
// period with a verification_ttl a little shorter, a storm of forced
// rotations (each forced key stays published for that ttl), a write to a
// short period, then a revocation of the active key, which is never refused
// and restarts the schedule at once. The ring must stay within maxRingKeys
// throughout (the invariant checks after the step).
func (m *model) restartStorm(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	short := rapid.SampledFrom([]int{10, 15, 20, 60}).Draw(t, "short-period")
	maxAge := int(defaultJWKSMaxAgeSeconds)
	if c, err := readConfig(context.Background(), &m.s.InmemStorage); err == nil {
		maxAge = int(c.JWKSMaxAge)
	}
	lead := max(2, 2*maxAge)
	if lead > 3600 {
		return // a lead that long leaves no room for the short period
	}
	if _, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring, map[string]any{"algorithm": "EdDSA", "rotation_period": 86400, "publish_lead": lead, "verification_ttl": 77760}); out != ok2xx {
		return
	}
	m.forceStormOf(t, ring)
	m.do(m.a, logical.UpdateOperation, "keys/"+ring, map[string]any{"rotation_period": short, "publish_lead": lead, "verification_ttl": 61})
	if _, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/rotate", map[string]any{"revoke_active": true}); out == ok2xx {
		modelOracleStats.restarts.Add(1)
	}
}
