package jwtrotor

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
)

// This file is the key lifecycle: where rotation is decided. Everything here
// is a pure function of a ring's stored timestamps and a time in Unix
// seconds, so the same answer comes out on every node, after every restart,
// and in tests that drive days of rotations in milliseconds. Nothing here
// reads storage, a clock, or randomness.

// Key states, derived from timestamps and never stored.
const (
	statePending  = "pending"
	stateActive   = "active"
	stateRetiring = "retiring"
	stateRemoved  = "removed"
	stateRevoked  = "revoked"
)

// maintenanceTickSeconds is how often Vault calls PeriodicFunc on the active
// node (its rollback manager period). Pending keys are stocked two ticks
// beyond the lead so a missed tick never leaves a slot without a published
// key.
const maintenanceTickSeconds int64 = 60

// forever stands for "not scheduled": a key with no successor neither retires
// nor leaves the JWKS.
const forever int64 = math.MaxInt64

func (k *signingKey) revoked() bool { return k.RevokedAt != 0 }

// leadWaived reports whether k may sign before a full publish_lead in this
// JWKS: it was forced, or imported (its verifiers trusted it before).
func (k *signingKey) leadWaived() bool { return k.Forced || k.Imported }

// signed reports whether k ever signed: it activated before any revocation.
func (k *signingKey) signed() bool { return !k.revoked() || k.RevokedAt > k.ActivateAt }

func (k *signingKey) retireAt() int64 {
	if k.RetireAt == 0 {
		return forever
	}
	return k.RetireAt
}

func (k *signingKey) removeAt() int64 {
	if k.RemoveAt == 0 {
		return forever
	}
	return k.RemoveAt
}

// state of k at time now.
func (k *signingKey) state(now int64) string {
	switch {
	case k.revoked():
		return stateRevoked
	case now < k.ActivateAt:
		return statePending
	case now < k.retireAt():
		return stateActive
	case now < k.removeAt():
		return stateRetiring
	default:
		return stateRemoved
	}
}

// published reports whether k belongs in the JWKS at now.
func (k *signingKey) published(now int64) bool {
	if k.revoked() || now < k.PublishAt {
		return false
	}
	return now < k.removeAt()
}

// ringSchedule is the part of a ring's settings the lifecycle needs.
type ringSchedule struct {
	RotationPeriod  int64
	VerificationTTL int64
	PublishLead     int64
}

// sortKeys orders keys by activation, the order the chain is walked in.
func sortKeys(keys []signingKey) {
	sort.SliceStable(keys, func(i, j int) bool {
		if keys[i].ActivateAt != keys[j].ActivateAt {
			return keys[i].ActivateAt < keys[j].ActivateAt
		}
		return keys[i].PublishAt < keys[j].PublishAt
	})
}

// activeIndex returns the index of the key that signs at now, or -1.
func activeIndex(keys []signingKey, now int64) int {
	for i := range keys {
		if keys[i].state(now) == stateActive {
			return i
		}
	}
	return -1
}

// activeAndPending returns the indexes of the key that signs at now and of
// the pending key that takes over from it, -1 for none.
func activeAndPending(keys []signingKey, now int64) (int, int) {
	a := activeIndex(keys, now)
	p := liveAfter(keys, a)
	if p >= 0 && keys[p].state(now) != statePending {
		p = -1
	}
	return a, p
}

// liveAfter returns the index of the first unrevoked key after i, or -1.
func liveAfter(keys []signingKey, i int) int {
	for j := i + 1; j < len(keys); j++ {
		if !keys[j].revoked() {
			return j
		}
	}
	return -1
}

// lastLive returns the index of the last unrevoked key, or -1.
func lastLive(keys []signingKey) int {
	for i := len(keys) - 1; i >= 0; i-- {
		if !keys[i].revoked() {
			return i
		}
	}
	return -1
}

// chain makes every unrevoked key retire exactly when its successor
// activates, so at any instant at most one key signs and a key without a
// successor keeps signing (no dry pipeline). It rewrites a key's RetireAt and
// RemoveAt only when its successor changed: settings changes alone never move
// existing timestamps. Retirements already in the past are never touched.
func chain(keys []signingKey, now int64) {
	sortKeys(keys)
	for i := range keys {
		k := &keys[i]
		if k.revoked() {
			continue
		}
		if k.RetireAt != 0 && k.RetireAt <= now {
			// Already retired: history is not rewritten.
			continue
		}
		next := liveAfter(keys, i)
		switch {
		case next < 0:
			k.RetireAt, k.RemoveAt = 0, 0
		case k.RetireAt != keys[next].ActivateAt:
			k.RetireAt = keys[next].ActivateAt
			k.RemoveAt = k.RetireAt + k.Overlap
		}
	}
}

// setOverlaps records the overlap each key will need: a key that can sign
// now keeps the longest verification_ttl in force while it could; a pending
// key, which has signed nothing, takes the current one.
func setOverlaps(keys []signingKey, sched ringSchedule, now int64) {
	for i := range keys {
		k := &keys[i]
		switch k.state(now) {
		case stateActive:
			k.Overlap = max(k.Overlap, sched.VerificationTTL)
		case statePending:
			k.Overlap = sched.VerificationTTL
		}
	}
}

// reschedule spaces the live keys after index p one period apart, each a
// full lead after its publication, and none in the past.
func reschedule(keys []signingKey, sched ringSchedule, p int, now int64) {
	prev := keys[p].ActivateAt
	for j := liveAfter(keys, p); j >= 0; j = liveAfter(keys, j) {
		at := max(prev+sched.RotationPeriod, keys[j].PublishAt+sched.PublishLead, now)
		keys[j].ActivateAt = at
		keys[j].Lead = sched.PublishLead
		prev = at
	}
}

// nextSlot is when a key generated at now to follow the last unrevoked key
// may activate: one period after its predecessor, and never before it has
// been published for the lead.
func nextSlot(keys []signingKey, sched ringSchedule, now int64) int64 {
	slot := now + sched.PublishLead
	if i := lastLive(keys); i >= 0 {
		if s := keys[i].ActivateAt + sched.RotationPeriod; s > slot {
			slot = s
		}
	}
	return slot
}

// stockSlots returns the activation times of the pending keys maintenance
// must generate at now, so that every slot up to now + lead + two ticks has a
// key that is already published. A key generated now for slot s is published
// for s - now >= lead seconds before it signs.
func stockSlots(keys []signingKey, sched ringSchedule, now int64) []int64 {
	horizon := now + sched.PublishLead + 2*maintenanceTickSeconds
	last := int64(math.MinInt64)
	if i := lastLive(keys); i >= 0 {
		last = keys[i].ActivateAt
	}
	var slots []int64
	for last <= horizon {
		slot := now + sched.PublishLead
		if last != math.MinInt64 && last+sched.RotationPeriod > slot {
			slot = last + sched.RotationPeriod
		}
		slots = append(slots, slot)
		last = slot
	}
	return slots
}

// rollbackCandidate returns the index of the key a rollback would restore at
// now, or -1: the retiring, unrevoked key just before the active one, inside
// its window (RetireAt + period), whose rollback is unused and whose private
// half is still stored.
func rollbackCandidate(keys []signingKey, sched ringSchedule, now int64) int {
	a := activeIndex(keys, now)
	if a <= 0 {
		return -1
	}
	for i := a - 1; i >= 0; i-- {
		k := &keys[i]
		if k.revoked() && !k.signed() {
			continue // revoked while pending: never the previous signer
		}
		if k.revoked() || k.state(now) != stateRetiring || k.RollbackUsed || keys[a].RollbackUsed || k.Imported {
			// An imported key's private half goes when it retires: its
			// copy's life inside Vault ends there.
			return -1
		}
		if now >= k.RetireAt+sched.RotationPeriod || !k.HasPrivate {
			// Past the window, or its private half is gone (released when
			// the window was shorter): it can never sign again.
			return -1
		}
		return i
	}
	return -1
}

// needsPrivate reports whether the private half of keys[i] must be kept at
// now: pending and active keys sign (or will), and the rollback candidate
// may sign again. Every other private half is deleted.
func needsPrivate(keys []signingKey, i int, sched ringSchedule, now int64) bool {
	switch keys[i].state(now) {
	case statePending, stateActive:
		return true
	case stateRetiring:
		return i == rollbackCandidate(keys, sched, now)
	}
	return false
}

// nextBoundary is the first instant after now at which any key of keys
// changes state; caches of anything derived from state are valid until then.
func nextBoundary(keys []signingKey, now int64) int64 {
	b := forever
	consider := func(t int64) {
		if t > now && t < b {
			b = t
		}
	}
	for i := range keys {
		k := &keys[i]
		if k.revoked() {
			continue
		}
		consider(k.PublishAt)
		consider(k.ActivateAt)
		if k.RetireAt != 0 {
			consider(k.RetireAt)
		}
		if k.RemoveAt != 0 {
			consider(k.RemoveAt)
		}
	}
	return b
}

// ringNextBoundary is nextBoundary over a ring's signing and trusted keys.
func ringNextBoundary(r *ringEntry, now int64) int64 {
	b := nextBoundary(r.Keys, now)
	for i := range r.Trusted {
		for _, t := range []int64{r.Trusted[i].AddedAt, r.Trusted[i].ExpiresAt} {
			if t > now && t < b {
				b = t
			}
		}
	}
	return b
}

// ringNextRemoval is nextRemoval over a ring's signing and trusted keys.
func ringNextRemoval(r *ringEntry, now int64) int64 {
	b := nextRemoval(r.Keys, now)
	for i := range r.Trusted {
		if t := &r.Trusted[i]; t.published(now) && t.ExpiresAt < b {
			b = t.ExpiresAt
		}
	}
	return b
}

// ringPublished reports whether any key of r, signing or trusted, is in
// the JWKS at now.
func ringPublished(r *ringEntry, now int64) bool {
	for i := range r.Keys {
		if r.Keys[i].published(now) {
			return true
		}
	}
	for i := range r.Trusted {
		if r.Trusted[i].published(now) {
			return true
		}
	}
	return false
}

// nextRemoval is the first scheduled removal of a published key after now.
func nextRemoval(keys []signingKey, now int64) int64 {
	b := forever
	for i := range keys {
		k := &keys[i]
		if k.published(now) && k.RemoveAt != 0 && k.RemoveAt > now && k.RemoveAt < b {
			b = k.RemoveAt
		}
	}
	return b
}

// checkTransition verifies that a write rewrites only the future: no changed
// timestamp lands before now. So no key retires before the last token it
// signed, and nothing that was published stops being so in the past (a
// rollback may move a past retirement, or a past activation, to the
// future). Keys may leave the ring only once removed or revoked; a dropped
// ring does not come here.
func checkTransition(old, cur []signingKey, now int64) error {
	byKID := make(map[string]*signingKey, len(cur))
	for i := range cur {
		byKID[cur[i].KID] = &cur[i]
	}
	for i := range old {
		o := &old[i]
		c := byKID[o.KID]
		if c == nil {
			if st := o.state(now); st != stateRemoved && st != stateRevoked {
				return fmt.Errorf("kid %s (%s) would vanish from the ring", o.KID, st)
			}
			continue
		}
		if c.PublishAt != o.PublishAt || c.Alg != o.Alg {
			return fmt.Errorf("kid %s would change its publication time or algorithm", o.KID)
		}
		if o.revoked() && c.RevokedAt != o.RevokedAt {
			return fmt.Errorf("kid %s would change its revocation", o.KID)
		}
		if !o.revoked() && c.revoked() && c.RevokedAt != now {
			return fmt.Errorf("kid %s would be revoked at %d, not now (%d)", o.KID, c.RevokedAt, now)
		}
		for _, ts := range []struct {
			name     string
			was, got int64
		}{{"activate_at", o.ActivateAt, c.ActivateAt}, {"retire_at", o.RetireAt, c.RetireAt}, {"remove_at", o.RemoveAt, c.RemoveAt}} {
			if ts.was == ts.got || c.revoked() {
				continue
			}
			if ts.got != 0 && ts.got < now {
				return fmt.Errorf("kid %s: %s would move from %d to %d, before now (%d)", o.KID, ts.name, ts.was, ts.got, now)
			}
		}
	}
	return nil
}

// checkTrusted verifies a ring's trusted keys against their bounds, and
// that no kid or thumbprint names two keys of the ring, signing or trusted.
func checkTrusted(keys []signingKey, trusted []trustedKey) error {
	if len(trusted) > maxTrustedKeys {
		return fmt.Errorf("%d trusted keys, above %d", len(trusted), maxTrustedKeys)
	}
	seen := map[string]bool{}
	claim := func(ids ...string) error {
		for _, id := range ids {
			if seen[id] {
				return fmt.Errorf("kid or thumbprint %s names two keys", id)
			}
			seen[id] = true
		}
		return nil
	}
	for i := range keys {
		k := &keys[i]
		ids := []string{k.KID}
		if k.Thumbprint != "" && k.Thumbprint != k.KID {
			ids = append(ids, k.Thumbprint)
		}
		if err := claim(ids...); err != nil {
			return err
		}
	}
	for i := range trusted {
		t := &trusted[i]
		ids := []string{t.KID}
		if t.Thumbprint != t.KID {
			ids = append(ids, t.Thumbprint)
		}
		if err := claim(ids...); err != nil {
			return err
		}
		if t.ExpiresAt <= t.AddedAt || t.ExpiresAt > t.AddedAt+maxTrustPeriodSeconds {
			return fmt.Errorf("trusted key %s is published from %d to %d, outside its bound", t.KID, t.AddedAt, t.ExpiresAt)
		}
	}
	return nil
}

// checkRing verifies the invariants every stored ring must satisfy. It runs
// before every write, so a bug can refuse a write but never store a ring
// that signs with two keys, with an unpublished key, or outside its overlap.
func checkRing(keys []signingKey, sched ringSchedule, now int64) error {
	seen := map[string]bool{}
	for i := range keys {
		k := &keys[i]
		if seen[k.KID] {
			return fmt.Errorf("kid %s appears twice", k.KID)
		}
		seen[k.KID] = true
		if k.ActivateAt < k.PublishAt {
			return fmt.Errorf("kid %s activates before it is published", k.KID)
		}
		lead := k.Lead
		if lead == 0 {
			lead = sched.PublishLead
		}
		if !k.leadWaived() && k.ActivateAt < k.PublishAt+lead && k.ActivateAt > now {
			return fmt.Errorf("kid %s would activate before a full publish_lead", k.KID)
		}
		if k.RetireAt != 0 && k.RetireAt < k.ActivateAt && !k.revoked() {
			return fmt.Errorf("kid %s retires before it activates", k.KID)
		}
		if (k.RetireAt == 0) != (k.RemoveAt == 0) && !k.revoked() {
			return fmt.Errorf("kid %s has a retirement without a removal", k.KID)
		}
		if k.state(now) != stateRemoved && k.state(now) != stateRevoked && needsPrivate(keys, i, sched, now) && !k.HasPrivate {
			if k.state(now) != stateRetiring {
				return fmt.Errorf("kid %s must sign but has no private half", k.KID)
			}
		}
	}
	// At any future boundary at most one key is active.
	probe := []int64{now}
	for i := range keys {
		probe = append(probe, keys[i].ActivateAt, keys[i].RetireAt)
	}
	for _, t := range probe {
		if t < now {
			continue
		}
		n := 0
		for i := range keys {
			if keys[i].state(t) == stateActive {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("%d keys would be active at %d", n, t)
		}
	}
	return nil
}

// What an operation's ring goes through before it is written: stocking
// with the pending keys the schedule needs (planStock) and settling its
// derived fields (settle, compact).

// settle brings r's derived fields up to date at now, after an operation
// rewrote timestamps: overlaps, the chain of retirements, and the removal of
// keys that are gone (removed keys are forgotten; revoked keys become
// tombstones). It returns the kids forgotten.
func settle(r *ringEntry, now int64) []string {
	if r.DeletedAt == 0 {
		setOverlaps(r.Keys, r.schedule(), now)
		chain(r.Keys, now)
	} else {
		sortKeys(r.Keys)
	}
	return compact(r, now)
}

// compact forgets removed keys and expired trusted keys, strips revoked keys
// to tombstones (kid, algorithm, thumbprint, timestamps; no public key), and
// forgets tombstones after a verification_ttl, or the oldest revocations
// beyond maxTombstones (excessTombstones). The history records what it
// forgets when the ring is written (recordDeparted).
func compact(r *ringEntry, now int64) []string {
	var forgotten []string
	drop := excessTombstones(r.Keys, r.VerificationTTL, now)
	kept := r.Keys[:0]
	for _, k := range r.Keys {
		switch k.state(now) {
		case stateRemoved:
			r.LastRemoval = max(r.LastRemoval, k.RemoveAt)
			forgotten = append(forgotten, k.KID)
			continue
		case stateRevoked:
			if now >= k.RevokedAt+r.VerificationTTL || drop[k.KID] {
				r.LastRemoval = max(r.LastRemoval, k.RevokedAt)
				forgotten = append(forgotten, k.KID)
				continue
			}
			k.PublicJWK, k.GateNote = nil, ""
		}
		kept = append(kept, k)
	}
	r.Keys = kept
	trusted := r.Trusted[:0]
	for _, t := range r.Trusted {
		if now >= t.ExpiresAt {
			r.LastRemoval = max(r.LastRemoval, t.ExpiresAt)
			forgotten = append(forgotten, t.KID)
			continue
		}
		trusted = append(trusted, t)
	}
	r.Trusted = trusted
	if len(r.Trusted) == 0 {
		r.Trusted = nil
	}
	return forgotten
}

// excessTombstones picks the tombstones past maxTombstones that compact
// forgets: the oldest revocations first, and at one time the tombstones of
// earlier writes before the keys this write revoked (still holding their
// public key). Those are never forgotten in the write that revoked them, so
// a revocation never makes its own key vanish unrecorded: their tombstones
// take the place of live keys, and the next write brings the count back to
// maxTombstones.
func excessTombstones(keys []signingKey, overlap, now int64) map[string]bool {
	var held []int
	for i := range keys {
		if k := &keys[i]; k.revoked() && now < k.RevokedAt+overlap {
			held = append(held, i)
		}
	}
	fresh := func(i int) bool { return keys[i].PublicJWK != nil }
	slices.SortStableFunc(held, func(a, b int) int {
		if c := cmp.Compare(keys[a].RevokedAt, keys[b].RevokedAt); c != 0 {
			return c
		}
		return cmp.Compare(b2i(fresh(a)), b2i(fresh(b)))
	})
	drop := map[string]bool{}
	for _, i := range held[:max(0, len(held)-maxTombstones)] {
		if !fresh(i) {
			drop[keys[i].KID] = true
		}
	}
	return drop
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// planStock appends the pending keys maintenance must keep ahead at now
// (none for a deleted ring).
func planStock(r *ringEntry, now int64) int {
	if r.DeletedAt != 0 {
		return 0
	}
	slots := stockSlots(r.Keys, r.schedule(), now)
	for _, at := range slots {
		plan(r, now, at)
	}
	return len(slots)
}
