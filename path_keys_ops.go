package jwtrotor

import (
	"context"

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
	snap, clk, err := b.state(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := clk.Schedule
	old := snap.rings[name]
	if old == nil || old.DeletedAt != 0 {
		return logical.ErrorResponse("name: no key ring %q; create it with vault write %skeys/%s", name, req.MountPoint, name), logical.ErrInvalidRequest
	}
	r := old.clone()
	var res opResult
	refusable, field := false, ""
	switch op {
	case "rotate":
		revokeActive := d.Get("revoke_active").(bool)
		res = rotateOp(r, now, d.Get("force").(bool), revokeActive, d.Get("expected_active_kid").(string))
		refusable, field = !revokeActive, "force"
	case "revoke":
		res, err = revokeOp(r, now, d.Get("kid").(string))
	case "rollback":
		res, err = rollbackOp(r, now)
		refusable, field = true, "rollback"
	}
	if err != nil {
		if ue, ok := err.(userError); ok {
			return logical.ErrorResponse(string(ue)), logical.ErrInvalidRequest
		}
		return nil, err
	}
	resp := &logical.Response{Data: map[string]any{}}
	for _, w := range res.Warnings {
		resp.AddWarning(w)
	}
	if res.Noop {
		if op == "rotate" {
			resp.Data["rotated"] = false
			resp.Data["active_kid"] = res.PreviousKID
		} else {
			resp.Data["revoked"] = res.Revoked
		}
		return resp, nil
	}
	planStock(r, now)
	settle(r, now)
	if refusable {
		if msg := checkBounds(snap, r, now, field); msg != "" {
			return logical.ErrorResponse(msg), logical.ErrInvalidRequest
		}
	}
	warnings, _, err := b.commitRing(ctx, req.Storage, old, r, now)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		resp.AddWarning(w)
	}
	if res.PromotedKID == "" && res.ActivatesAt != 0 {
		res.PromotedKID = kidActivatingAt(r, res.ActivatesAt)
	}
	b.recordOp(r.Name, op, res)

	// The state right after the operation.
	a, p := activeAndPending(r.Keys, now)
	resp.Data["active_kid"], resp.Data["pending_kid"] = "", ""
	if a >= 0 {
		resp.Data["active_kid"] = r.Keys[a].KID
	}
	if p >= 0 {
		resp.Data["pending_kid"] = r.Keys[p].KID
	}
	switch op {
	case "rotate":
		resp.Data["rotated"] = true
		resp.Data["previous_kid"] = res.PreviousKID
		resp.Data["promoted_kid"] = res.PromotedKID
		resp.Data["activates_at"] = res.ActivatesAt
	case "revoke":
		resp.Data["revoked"] = res.Revoked
	case "rollback":
		resp.Data["pending_kid"] = res.PreviousKID
		resp.Data["activates_at"] = res.ActivatesAt
	}
	return resp, nil
}

// kidActivatingAt names the key of r that activates at t.
func kidActivatingAt(r *ringEntry, t int64) string {
	for i := range r.Keys {
		if k := &r.Keys[i]; !k.revoked() && k.ActivateAt == t {
			return k.KID
		}
	}
	return ""
}

// recordOp logs and counts what an operation did, in one place.
func (b *backend) recordOp(ring, op string, res opResult) {
	switch {
	case op == "rollback":
		b.log().Info("rollback", "ring", ring, "kid", res.PromotedKID, "replaced_kid", res.PreviousKID, "until", fmtTime(res.ActivatesAt), "reason", "manual")
		b.metrics.rollbacks.WithLabelValues(ring).Inc()
	case res.Reason != "":
		b.log().Info("rotation", "ring", ring, "kid", res.PromotedKID, "previous_kid", res.PreviousKID, "activates_at", fmtTime(res.ActivatesAt), "reason", res.Reason)
		b.metrics.rotations.WithLabelValues(ring, res.Reason).Inc()
		b.manualKIDs[res.PromotedKID] = true
	}
	if res.Revoked != "" {
		reason := "manual"
		if op == "rotate" {
			reason = "rotate with revoke_active"
		}
		b.log().Info("revocation", "ring", ring, "kid", res.Revoked, "reason", reason)
		b.metrics.revocations.WithLabelValues(ring).Inc()
	}
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
