package jwtrotor

import (
	"fmt"
)

// The lifecycle operations: rotate, revoke, rollback, the key a settings
// change adds and delete; the keys an adopted issuer brings are added by
// importOp (import.go) and trustOp (trust.go) in the same way. Each is a
// pure function of a ring and a time that rewrites timestamps in place;
// keys it needs are appended as planned keys (no kid yet, see plan), made
// only once every check has passed (materialize); key material that comes
// from outside is passed in, already parsed. The handlers parse, call one
// of these, commit and render.

// opResult is what an operation did, for the response, the log and the
// metrics.
type opResult struct {
	// Noop: nothing to write (a repeated rotation, an already revoked kid).
	Noop        bool
	PreviousKID string
	// PromotedKID is the key that activates at ActivatesAt; "" for a
	// planned key, whose kid is known once it is made.
	PromotedKID string
	ActivatesAt int64
	Revoked     string
	// Reason labels the rotation metric ("" when nothing activates).
	Reason   string
	Warnings []string
}

func (r *opResult) warn(format string, args ...any) {
	r.Warnings = append(r.Warnings, fmt.Sprintf(format, args...))
}

// plan appends a key to be made for slot at, published now.
func plan(r *ringEntry, now, at int64) int {
	r.Keys = append(r.Keys, signingKey{
		Alg: r.Algorithm, rsaBits: r.RSABits,
		PublishAt: now, ActivateAt: at, Lead: r.PublishLead, Overlap: r.VerificationTTL, HasPrivate: true,
	})
	return len(r.Keys) - 1
}

// planned reports whether k is a planned key not yet made.
func (k *signingKey) planned() bool { return k.KID == "" }

// materialize makes the planned keys of r with keys and returns them, for
// their private halves to be stored.
func materialize(r *ringEntry, keys keySource) ([]*generatedKey, error) {
	var out []*generatedKey
	for i := range r.Keys {
		k := &r.Keys[i]
		if !k.planned() {
			continue
		}
		g, err := keys(k.Alg, k.rsaBits)
		if err != nil {
			return nil, fmt.Errorf("ring %q: %w", r.Name, err)
		}
		k.KID, k.PublicJWK = g.KID, g.PublicJWK
		out = append(out, g)
	}
	return out, nil
}

// rotateOp promotes the pending key at max(now, publish_at + lead), never
// later than it was already due, or now under force, and reschedules the
// keys after it. revokeActive also revokes the outgoing key (and implies
// force). expected, when set, must be the active kid, or nothing is done.
func rotateOp(r *ringEntry, now int64, force, revokeActive bool, expected string) opResult {
	res := opResult{}
	if revokeActive {
		force = true
	}
	a := activeIndex(r.Keys, now)
	if a >= 0 {
		res.PreviousKID = r.Keys[a].KID
	}
	if expected != "" && expected != res.PreviousKID {
		res.Noop = true
		res.warn("nothing done: the active kid is %q, not %q (a retried or repeated rotation is a no-op)", res.PreviousKID, expected)
		return res
	}
	p := liveAfter(r.Keys, a)
	if p < 0 {
		p = plan(r, now, now+r.PublishLead)
	}
	k := &r.Keys[p]
	// Never later than already scheduled (under the lead it was scheduled
	// with); sooner if the current lead allows.
	if at := max(now, k.PublishAt+r.PublishLead); at < k.ActivateAt {
		k.ActivateAt, k.Lead = at, r.PublishLead
	}
	at := k.ActivateAt
	if force && at > now {
		at = now
		k.Forced = true
		res.warn("forced: key %s signs now after %ds in the JWKS, less than publish_lead (%ds); verifiers that have not refreshed since will reject its tokens until they do", kidOrNew(k), now-k.PublishAt, r.PublishLead)
	}
	if revokeActive && a >= 0 {
		r.Keys[a].RevokedAt = now
		res.Revoked = r.Keys[a].KID
		res.warn("key %s is revoked: out of the JWKS now; its unexpired tokens no longer verify once verifiers refresh", res.Revoked)
	}
	if k.Forced && at == now {
		k.Lead = r.PublishLead
	}
	k.ActivateAt = at
	reschedule(r.Keys, r.schedule(), p, now)
	res.PromotedKID, res.ActivatesAt = k.KID, at
	if at > now {
		res.warn("scheduled: key %s activates at %s, once it has been published for publish_lead (%ds); force=true activates it now", kidOrNew(k), fmtTime(at), r.PublishLead)
	}
	switch {
	case revokeActive:
		res.Reason = "manual, outgoing key revoked"
	case force:
		res.Reason = "manual, forced"
	default:
		res.Reason = "manual"
	}
	return res
}

func kidOrNew(k *signingKey) string {
	if k.planned() {
		return "(new key)"
	}
	return k.KID
}

// revokeOp takes kid out of signing and the JWKS at once. Revoking the active
// key promotes the next key at once (forced, if its lead is not met);
// revoking the pending key that was next gives its slot to the key after it,
// no earlier than that key's own lead; no other key's schedule moves.
func revokeOp(r *ringEntry, now int64, kid string) (opResult, error) {
	res := opResult{}
	if kid == "" {
		return res, refuse("kid", "required; give the kid to revoke (see signing_keys in vault read keys/%s)", r.Name)
	}
	for j := range r.Trusted {
		if t := r.Trusted[j]; t.KID == kid {
			// A trusted key leaves the JWKS now, before its expires_at;
			// the history keeps it, so it is never trusted or imported
			// again.
			r.Trusted = append(r.Trusted[:j:j], r.Trusted[j+1:]...)
			res.Revoked = kid
			res.warn("trusted key %s left the JWKS now instead of at %s; tokens of the old issuer signed with it no longer verify once verifiers refresh, and it can never be trusted or imported again", kid, fmtTime(t.ExpiresAt))
			return res, nil
		}
	}
	i := -1
	for j := range r.Keys {
		if r.Keys[j].KID == kid {
			i = j
		}
	}
	if i < 0 {
		return res, refuse("kid", "%q is not a key of ring %q (it may have been removed already); see signing_keys in vault read keys/%s", kid, r.Name, r.Name)
	}
	k := &r.Keys[i]
	st := k.state(now)
	switch st {
	case stateRevoked:
		res.Noop, res.Revoked = true, kid
		res.warn("key %s was already revoked", kid)
		return res, nil
	case stateRemoved:
		return res, refuse("kid", "%q was already removed from the JWKS at %s; nothing to revoke", kid, fmtTime(k.RemoveAt))
	}
	a := activeIndex(r.Keys, now)
	next := liveAfter(r.Keys, a) // the key that takes over from the active one
	slot := k.ActivateAt
	k.RevokedAt = now
	res.Revoked = kid
	switch {
	case st == stateActive:
		p := liveAfter(r.Keys, i)
		if p < 0 {
			p = plan(r, now, now)
		}
		q := &r.Keys[p]
		if q.ActivateAt > now {
			q.ActivateAt = now
		}
		q.Lead = r.PublishLead
		q.Forced = q.Forced || q.PublishAt+r.PublishLead > now
		reschedule(r.Keys, r.schedule(), p, now)
		res.PromotedKID, res.ActivatesAt, res.Reason = q.KID, now, "active key revoked"
		res.warn("the active key was revoked; key %s signs from now after %ds in the JWKS (publish_lead is %ds): verifiers that have not refreshed since reject its tokens until they do", kidOrNew(q), now-q.PublishAt, r.PublishLead)
	case st == statePending && i == next:
		if q := liveAfter(r.Keys, i); q >= 0 {
			r.Keys[q].ActivateAt = max(slot, r.Keys[q].PublishAt+r.PublishLead, now)
			r.Keys[q].Lead = r.PublishLead
			reschedule(r.Keys, r.schedule(), q, now)
		} else {
			// With no key after it, a new key takes its slot, no earlier
			// than a full lead from now: the active key still retires when
			// it was due to, and the keys the bounds projected stay the
			// keys the ring publishes.
			plan(r, now, max(slot, now+r.PublishLead))
		}
	case st == statePending:
		// A later pending key: the keys after it close up behind the live
		// key before it, which keeps its own slot.
		for j := i - 1; j >= 0; j-- {
			if !r.Keys[j].revoked() {
				reschedule(r.Keys, r.schedule(), j, now)
				break
			}
		}
	}
	return res, nil
}

// rollbackOp lets the previous key sign again until its original retirement
// plus one period; the key it replaced returns to pending and activates then.
func rollbackOp(r *ringEntry, now int64) (opResult, error) {
	res := opResult{}
	a := activeIndex(r.Keys, now)
	c := rollbackCandidate(r.Keys, r.schedule(), now)
	if c < 0 {
		return res, rollbackRefusal(r, a, now)
	}
	until := r.Keys[c].RetireAt + r.RotationPeriod
	r.Keys[c].RetireAt, r.Keys[c].RemoveAt = 0, 0
	r.Keys[c].RollbackUsed = true
	r.Keys[a].RollbackUsed = true
	r.Keys[a].ActivateAt = until
	reschedule(r.Keys, r.schedule(), a, now)
	res.PreviousKID = r.Keys[a].KID
	res.PromotedKID, res.ActivatesAt = r.Keys[c].KID, until
	return res, nil
}

// rollbackRefusal says why no rollback is possible.
func rollbackRefusal(r *ringEntry, a int, now int64) error {
	if a < 0 {
		return refuse("rollback", "the ring has no active key to roll back from")
	}
	if r.Keys[a].RollbackUsed {
		return refuse("rollback", "the active key %s already took part in a rollback; a second one would keep keys published too long, so rotate instead", r.Keys[a].KID)
	}
	for i := a - 1; i >= 0; i-- {
		k := &r.Keys[i]
		switch {
		case k.revoked() && !k.signed():
			continue
		case k.revoked():
			return refuse("rollback", "the previous key %s is revoked; a revoked key never signs again, so rotate instead", k.KID)
		case k.RollbackUsed:
			return refuse("rollback", "the previous key %s already took part in a rollback; a second one would keep keys published too long, so rotate instead", k.KID)
		case k.state(now) == stateRemoved:
			return refuse("rollback", "the previous key %s has left the JWKS; rotate instead", k.KID)
		case now >= k.RetireAt+r.RotationPeriod:
			return refuse("rollback", "the window closed at %s (the previous key's retirement plus one rotation_period); rotate instead", fmtTime(k.RetireAt+r.RotationPeriod))
		case !k.HasPrivate:
			return refuse("rollback", "the private half of the previous key %s is already deleted (its window had closed under a shorter rotation_period); rotate instead", k.KID)
		}
	}
	return refuse("rollback", "no previous key is retiring (it has been removed or never existed); rotate instead")
}

// settingsOp completes a ring write: r carries the new settings (old is
// nil for a new ring). Existing keys keep their algorithm and timestamps; a
// change of algorithm or RSA size adds one key of the new kind at the end of
// the chain, obeying the lead (its activation is ActivatesAt); the pipeline
// is stocked.
func settingsOp(old, r *ringEntry, now int64) opResult {
	var res opResult
	if old != nil && (old.Algorithm != r.Algorithm || (isRSA(r.Algorithm) && old.RSABits != r.RSABits)) {
		i := plan(r, now, nextSlot(r.Keys, r.schedule(), now))
		res.ActivatesAt = r.Keys[i].ActivateAt
	}
	planStock(r, now)
	settle(r, now)
	if old != nil && r.PublishLead > old.PublishLead {
		res.warn("publish_lead raised to %ds: keys already scheduled keep the lead they were scheduled with; keys generated from now on obey the new lead", r.PublishLead)
	}
	if old == nil {
		res.warn("the first key of ring %q signs from %s, once it has been published for publish_lead; to sign sooner, write keys/%s/rotate force=true (verifiers that have not fetched the JWKS since will reject its tokens until they do)", r.Name, fmtTime(r.Keys[0].ActivateAt), r.Name)
	}
	return res
}

// deleteOp stops a ring signing at now: pending keys, which never signed,
// are revoked; the active key retires now and stays published for its
// overlap.
func deleteOp(r *ringEntry, now int64) {
	r.DeletedAt = now
	setOverlaps(r.Keys, r.schedule(), now)
	for i := range r.Keys {
		k := &r.Keys[i]
		switch k.state(now) {
		case statePending:
			k.RevokedAt = now
		case stateActive:
			k.RetireAt, k.RemoveAt = now, now+k.Overlap
		}
	}
}
