package jwtrotor

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// pathKeyOps declares keys/<name>/rotate, /revoke and /rollback, before the
// keys/<name> pattern.
func pathKeyOps(b *backend, nameField *framework.FieldSchema) *framework.Path {
	return &framework.Path{
		Pattern: "keys/" + framework.GenericNameRegex("name") + "/" + framework.GenericNameRegex("op") + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "key-operation",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": nameField,
			"op": {
				Type:        framework.TypeLowerCaseString,
				Description: "rotate, revoke or rollback.",
				Required:    true,
			},
			"force": {
				Type:        framework.TypeBool,
				Description: "rotate: promote the pending key now even if it has been published for less than publish_lead.",
			},
			"revoke_active": {
				Type:        framework.TypeBool,
				Description: "rotate: revoke the outgoing key (out of the JWKS at once) instead of retiring it. Implies force.",
			},
			"expected_active_kid": {
				Type:        framework.TypeString,
				Description: "rotate: do nothing unless this is the active kid, so retries and re-applies are safe.",
			},
			"kid": {
				Type:        framework.TypeString,
				Description: "revoke: the kid to take out of signing and the JWKS at once.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: writeOp(b.pathKeyOp),
		},
		HelpSynopsis:    pathKeyOpsHelpSyn,
		HelpDescription: pathKeyOpsHelpDesc,
	}
}

func (b *backend) pathKeyOp(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	op := d.Get("op").(string)
	allowed := map[string][]string{
		"rotate":   {"force", "revoke_active", "expected_active_kid"},
		"revoke":   {"kid"},
		"rollback": {},
	}
	fields, ok := allowed[op]
	if !ok {
		return logical.ErrorResponse("op: %q is not an operation; use keys/%s/rotate, keys/%s/revoke or keys/%s/rollback", op, name, name, name), logical.ErrInvalidRequest
	}
	for k := range req.Data {
		if k == "name" || k == "op" {
			continue
		}
		found := false
		for _, f := range fields {
			found = found || f == k
		}
		if !found {
			return logical.ErrorResponse("%s: not a field of keys/%s/%s (it takes %v); remove it", k, name, op, fields), logical.ErrInvalidRequest
		}
	}

	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	old := snap.rings[name]
	if old == nil || old.DeletedAt != 0 {
		return logical.ErrorResponse("name: no key ring %q; create it with vault write %skeys/%s", name, req.MountPoint, name), logical.ErrInvalidRequest
	}
	now := b.now()
	r := old.clone()
	resp := &logical.Response{Data: map[string]any{}}
	var generated []*generatedKey
	switch op {
	case "rotate":
		generated, err = b.rotate(r, d, now, resp)
	case "revoke":
		generated, err = b.revoke(r, d.Get("kid").(string), now, resp)
	case "rollback":
		err = b.rollback(r, now, resp)
	}
	if err != nil {
		if ue, ok := err.(userError); ok {
			return logical.ErrorResponse(string(ue)), logical.ErrInvalidRequest
		}
		return nil, err
	}
	if resp.Data["rotated"] == false {
		return resp, nil
	}
	more, err := b.stock(r, now)
	if err != nil {
		return nil, err
	}
	if err := b.commitRing(ctx, req.Storage, old, r, append(generated, more...), now); err != nil {
		return nil, err
	}
	// The state right after the operation.
	a, p := activeAndPending(r.Keys, now)
	resp.Data["active_kid"], resp.Data["pending_kid"] = "", ""
	if a >= 0 {
		resp.Data["active_kid"] = r.Keys[a].KID
	}
	if p >= 0 {
		resp.Data["pending_kid"] = r.Keys[p].KID
	}
	return resp, nil
}

// userError is a refusal to report to the caller as a 400.
type userError string

func (e userError) Error() string { return string(e) }

// rotate promotes the pending key at max(now, publish_at + lead), or now
// under force, and reschedules the keys after it.
func (b *backend) rotate(r *ringEntry, d *framework.FieldData, now int64, resp *logical.Response) ([]*generatedKey, error) {
	force := d.Get("force").(bool)
	revokeActive := d.Get("revoke_active").(bool)
	if revokeActive {
		force = true
	}
	a := activeIndex(r.Keys, now)
	if want, ok := d.GetOk("expected_active_kid"); ok && want.(string) != "" {
		got := ""
		if a >= 0 {
			got = r.Keys[a].KID
		}
		if got != want.(string) {
			resp.Data["rotated"] = false
			resp.Data["active_kid"] = got
			resp.AddWarning(fmt.Sprintf("nothing done: the active kid is %q, not %q (a retried or repeated rotation is a no-op)", got, want.(string)))
			return nil, nil
		}
	}
	var generated []*generatedKey
	p := liveAfter(r.Keys, a)
	if p < 0 {
		g, err := b.appendKey(r, now, now+r.PublishLead)
		if err != nil {
			return nil, err
		}
		generated = append(generated, g)
		p = len(r.Keys) - 1
	}
	at := r.Keys[p].PublishAt + r.PublishLead
	if at < now {
		at = now
	}
	if force && at > now {
		at = now
		r.Keys[p].Forced = true
		resp.AddWarning(fmt.Sprintf("forced: key %s signs now after %ds in the JWKS, less than publish_lead (%ds); verifiers that have not refreshed since will reject its tokens until they do", r.Keys[p].KID, now-r.Keys[p].PublishAt, r.PublishLead))
	}
	prev := ""
	if a >= 0 {
		prev = r.Keys[a].KID
		if revokeActive {
			r.Keys[a].RevokedAt = now
			resp.AddWarning(fmt.Sprintf("key %s is revoked: out of the JWKS now; its unexpired tokens no longer verify once verifiers refresh", prev))
		}
	}
	r.Keys[p].ActivateAt = at
	r.Keys[p].Lead = r.PublishLead
	reschedule(r, p)
	resp.Data["rotated"] = true
	resp.Data["previous_kid"] = prev
	resp.Data["promoted_kid"] = r.Keys[p].KID
	resp.Data["activates_at"] = at
	if at > now {
		resp.AddWarning(fmt.Sprintf("scheduled: key %s activates at %s, once it has been published for publish_lead (%ds); force=true activates it now", r.Keys[p].KID, fmtTime(at), r.PublishLead))
	}
	reason := "manual"
	if revokeActive {
		reason = "manual, outgoing key revoked"
	} else if force {
		reason = "manual, forced"
	}
	b.log().Info("rotation", "ring", r.Name, "kid", r.Keys[p].KID, "previous_kid", prev, "activates_at", fmtTime(at), "reason", reason)
	b.metrics.rotations.WithLabelValues(r.Name, reason).Inc()
	b.manualKIDs[r.Keys[p].KID] = true
	if revokeActive && prev != "" {
		b.log().Info("revocation", "ring", r.Name, "kid", prev, "reason", "rotate with revoke_active")
		b.metrics.revocations.WithLabelValues(r.Name).Inc()
	}
	return generated, nil
}

// reschedule spaces the keys after index p one period apart, never before
// each has been published for the lead.
func reschedule(r *ringEntry, p int) {
	prev := r.Keys[p].ActivateAt
	for j := liveAfter(r.Keys, p); j >= 0; j = liveAfter(r.Keys, j) {
		at := prev + r.RotationPeriod
		if min := r.Keys[j].PublishAt + r.PublishLead; at < min {
			at = min
		}
		r.Keys[j].ActivateAt = at
		r.Keys[j].Lead = r.PublishLead
		prev = at
	}
}

func (b *backend) revoke(r *ringEntry, kid string, now int64, resp *logical.Response) ([]*generatedKey, error) {
	if kid == "" {
		return nil, userError("kid: required; give the kid to revoke (see signing_keys in vault read keys/" + r.Name + ")")
	}
	i := -1
	for j := range r.Keys {
		if r.Keys[j].KID == kid {
			i = j
		}
	}
	if i < 0 {
		return nil, userError(fmt.Sprintf("kid: %q is not a key of ring %q (it may have been removed already); see signing_keys in vault read keys/%s", kid, r.Name, r.Name))
	}
	st := r.Keys[i].state(now)
	switch st {
	case stateRevoked:
		resp.Data["revoked"] = kid
		resp.AddWarning(fmt.Sprintf("key %s was already revoked", kid))
		return nil, nil
	case stateRemoved:
		return nil, userError(fmt.Sprintf("kid: %q was already removed from the JWKS at %s; nothing to revoke", kid, fmtTime(r.Keys[i].RemoveAt)))
	}
	a := activeIndex(r.Keys, now)
	r.Keys[i].RevokedAt = now
	resp.Data["revoked"] = kid
	var generated []*generatedKey
	switch st {
	case stateActive:
		p := liveAfter(r.Keys, i)
		if p < 0 {
			g, err := b.appendKey(r, now, now)
			if err != nil {
				return nil, err
			}
			generated = append(generated, g)
			p = len(r.Keys) - 1
		}
		if r.Keys[p].ActivateAt > now {
			r.Keys[p].ActivateAt = now
			r.Keys[p].Forced = r.Keys[p].PublishAt+r.PublishLead > now
		}
		reschedule(r, p)
		resp.Data["active_kid"] = r.Keys[p].KID
		b.manualKIDs[r.Keys[p].KID] = true
		b.metrics.rotations.WithLabelValues(r.Name, "active key revoked").Inc()
		resp.AddWarning(fmt.Sprintf("the active key was revoked; key %s signs from now after %ds in the JWKS (publish_lead is %ds): verifiers that have not refreshed since reject its tokens until they do", r.Keys[p].KID, now-r.Keys[p].PublishAt, r.PublishLead))
	case statePending:
		if a >= 0 {
			reschedule(r, a)
		}
	}
	b.log().Info("revocation", "ring", r.Name, "kid", kid, "state", st, "reason", "manual")
	b.metrics.revocations.WithLabelValues(r.Name).Inc()
	return generated, nil
}

// rollback lets the previous key sign again until its original retirement
// plus one period; the key it replaced returns to pending and activates then.
func (b *backend) rollback(r *ringEntry, now int64, resp *logical.Response) error {
	a := activeIndex(r.Keys, now)
	c := rollbackCandidate(r.Keys, r.schedule(), now)
	if c < 0 {
		return userError(rollbackRefusal(r, a, now))
	}
	if !r.Keys[c].HasPrivate {
		return userError(fmt.Sprintf("rollback: the private half of %s is already deleted; rotate instead", r.Keys[c].KID))
	}
	until := r.Keys[c].RetireAt + r.RotationPeriod
	r.Keys[c].RetireAt, r.Keys[c].RemoveAt = 0, 0
	r.Keys[c].RollbackUsed = true
	r.Keys[a].RollbackUsed = true
	r.Keys[a].ActivateAt = until
	reschedule(r, a)
	resp.Data["active_kid"] = r.Keys[c].KID
	resp.Data["pending_kid"] = r.Keys[a].KID
	resp.Data["activates_at"] = until
	b.log().Info("rollback", "ring", r.Name, "kid", r.Keys[c].KID, "replaced_kid", r.Keys[a].KID, "until", fmtTime(until), "reason", "manual")
	b.metrics.rollbacks.WithLabelValues(r.Name).Inc()
	return nil
}

// rollbackRefusal says why no rollback is possible.
func rollbackRefusal(r *ringEntry, a int, now int64) string {
	if a < 0 {
		return "rollback: the ring has no active key to roll back from"
	}
	if r.Keys[a].RollbackUsed {
		return fmt.Sprintf("rollback: the active key %s already took part in a rollback; a second one would keep keys published too long, so rotate instead", r.Keys[a].KID)
	}
	for i := a - 1; i >= 0; i-- {
		k := &r.Keys[i]
		switch {
		case k.revoked() && !k.signed():
			continue
		case k.revoked():
			return fmt.Sprintf("rollback: the previous key %s is revoked; a revoked key never signs again, so rotate instead", k.KID)
		case k.RollbackUsed:
			return fmt.Sprintf("rollback: the previous key %s already took part in a rollback; a second one would keep keys published too long, so rotate instead", k.KID)
		case k.state(now) == stateRemoved:
			return fmt.Sprintf("rollback: the previous key %s has left the JWKS; rotate instead", k.KID)
		case now >= k.RetireAt+r.RotationPeriod:
			return fmt.Sprintf("rollback: the window closed at %s (the previous key's retirement plus one rotation_period); rotate instead", fmtTime(k.RetireAt+r.RotationPeriod))
		}
	}
	return "rollback: no previous key is retiring (it has been removed or never existed); rotate instead"
}

const pathKeyOpsHelpSyn = `Rotate, revoke or roll back a ring's keys.`

const pathKeyOpsHelpDesc = `
rotate promotes the pending key once it has been published for publish_lead
(now, if it already has) and stocks a new pending key. force=true promotes it
now; revoke_active=true also revokes the outgoing key. expected_active_kid
makes a retried rotation a no-op.

revoke takes kid out of signing and the JWKS at once. Revoking the active key
promotes the pending key at once.

rollback, while the previous key is still published and within one
rotation_period of its retirement, makes it sign again until then; the newer
key returns to pending and activates at that time.
`
