package jwtrotor

import (
	"context"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// The lifecycle operations of a ring, one path each: keys/<name>/rotate,
// /revoke and /rollback, declared before the keys/<name> pattern. Each
// handler parses its fields, calls the pure operation (operations.go),
// commits and answers.

// opAnswer is what the three operations answer.
var opAnswer = map[string]*framework.FieldSchema{
	"active_kid":  {Type: framework.TypeString, Description: "The kid signing right after the request.", Required: true},
	"pending_kid": {Type: framework.TypeString, Description: "The kid that activates next.", Required: true},
}

func withAnswer(extra map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	out := map[string]*framework.FieldSchema{}
	for k, v := range opAnswer {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func pathKeyOps(b *backend, nameField *framework.FieldSchema) []*framework.Path {
	return []*framework.Path{
		ringOpPath(nameField, "rotate", map[string]*framework.FieldSchema{
			"force": {
				Type:        framework.TypeBool,
				Description: "Promote the pending key now even if it has been published for less than publish_lead (the response warns).",
			},
			"revoke_active": {
				Type:        framework.TypeBool,
				Description: "Revoke the outgoing key (out of the JWKS at once) instead of retiring it. Implies force.",
			},
			"expected_active_kid": {
				Type:        framework.TypeString,
				Description: "Do nothing unless this is the active kid, so retries and re-applies are safe.",
			},
		}, writeOp(b.pathRotate, "rotate", "key", "Promote a ring's pending key, at once with force.", withAnswer(map[string]*framework.FieldSchema{
			"rotated":      {Type: framework.TypeBool, Description: "false when expected_active_kid did not match and nothing was done.", Required: true},
			"previous_kid": {Type: framework.TypeString, Description: "The key that signed before the rotation."},
			"promoted_kid": {Type: framework.TypeString, Description: "The key that takes over."},
			"activates_at": {Type: framework.TypeInt64, Description: "When the promoted key signs (Unix seconds)."},
		})), "Rotate a ring: promote its pending key.", pathRotateHelpDesc),
		ringOpPath(nameField, "revoke", map[string]*framework.FieldSchema{
			"kid": {
				Type:        framework.TypeString,
				Description: "The kid to take out of signing and the JWKS at once (a signing key or a trusted key of the ring).",
				Required:    true,
			},
		}, writeOp(b.pathRevoke, "revoke", "key", "Take a key out of signing and the JWKS at once.", withAnswer(map[string]*framework.FieldSchema{
			"revoked": {Type: framework.TypeString, Description: "The revoked kid.", Required: true},
		})), "Revoke one key of a ring.", pathRevokeHelpDesc),
		ringOpPath(nameField, "rollback", nil,
			writeOp(b.pathRollback, "roll-back", "key", "Let the previous key sign again for at most one more period.", withAnswer(map[string]*framework.FieldSchema{
				"activates_at": {Type: framework.TypeInt64, Description: "When the replaced key signs again (Unix seconds).", Required: true},
			})), "Roll a ring back to its previous key.", pathRollbackHelpDesc),
	}
}

// ringOpPath is keys/<name>/<op>: one lifecycle operation on a ring, an
// update with the ring's name and the operation's own fields.
func ringOpPath(nameField *framework.FieldSchema, op string, fields map[string]*framework.FieldSchema, handler framework.OperationHandler, synopsis, help string) *framework.Path {
	all := map[string]*framework.FieldSchema{"name": nameField}
	for k, v := range fields {
		all[k] = v
	}
	return &framework.Path{
		Pattern:         "keys/" + framework.GenericNameRegex("name") + "/" + op + "$",
		DisplayAttrs:    &framework.DisplayAttributes{OperationPrefix: operationPrefix},
		Fields:          all,
		Operations:      map[logical.Operation]framework.OperationHandler{logical.UpdateOperation: handler},
		HelpSynopsis:    synopsis,
		HelpDescription: help,
	}
}

func (b *backend) pathRotate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	revokeActive := d.Get("revoke_active").(bool)
	return b.runOp(ctx, req, d, "rotate", !revokeActive, func(r *ringEntry, now int64) (opResult, error) {
		return rotateOp(r, now, d.Get("force").(bool), revokeActive, d.Get("expected_active_kid").(string)), nil
	})
}

func (b *backend) pathRevoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.runOp(ctx, req, d, "revoke", false, func(r *ringEntry, now int64) (opResult, error) {
		return revokeOp(r, now, d.Get("kid").(string))
	})
}

func (b *backend) pathRollback(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.runOp(ctx, req, d, "rollback", true, func(r *ringEntry, now int64) (opResult, error) {
		return rollbackOp(r, now)
	})
}

// runOp runs one lifecycle operation on the named ring under the write
// lock: load, operate, check the bounds (when the operation may be refused
// for them; a revocation never is), commit, record, answer.
func (b *backend) runOp(ctx context.Context, req *logical.Request, d *framework.FieldData, op string, bounded bool, do func(*ringEntry, int64) (opResult, error)) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, clk, err := b.state(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := clk.Schedule
	old := snap.rings[name]
	if old == nil || old.DeletedAt != 0 {
		return respond(refuse("name", "no key ring %q; create it with vault write %skeys/%s", name, req.MountPoint, name))
	}
	r := old.clone()
	res, err := do(r, now)
	if err != nil {
		return respond(err)
	}
	resp := &logical.Response{Data: map[string]any{}}
	for _, w := range res.Warnings {
		resp.AddWarning(w)
	}
	a, p := activeAndPending(r.Keys, now)
	if res.Noop {
		resp.Data["active_kid"], resp.Data["pending_kid"] = kidAt(r, a), kidAt(r, p)
		if op == "rotate" {
			resp.Data["rotated"] = false
		} else {
			resp.Data["revoked"] = res.Revoked
		}
		return resp, nil
	}
	planStock(r, now)
	settle(r, now)
	if bounded {
		field := "force"
		if op == "rollback" {
			field = "rollback"
		}
		if err := checkBounds(snap, r, now, field); err != nil {
			return respond(err)
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
	a, p = activeAndPending(r.Keys, now)
	resp.Data["active_kid"], resp.Data["pending_kid"] = kidAt(r, a), kidAt(r, p)
	switch op {
	case "rotate":
		resp.Data["rotated"] = true
		resp.Data["previous_kid"] = res.PreviousKID
		resp.Data["promoted_kid"] = res.PromotedKID
		resp.Data["activates_at"] = res.ActivatesAt
	case "revoke":
		resp.Data["revoked"] = res.Revoked
	case "rollback":
		resp.Data["activates_at"] = res.ActivatesAt
	}
	return resp, nil
}

// kidAt is the kid of r's key i, or "" for none.
func kidAt(r *ringEntry, i int) string {
	if i < 0 {
		return ""
	}
	return r.Keys[i].KID
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

// rotated logs and counts one activation, whatever made it: an operation
// (when it is requested, with the time it takes effect) or the schedule
// (noted by maintenance after it took effect).
func (b *backend) rotated(ring, kid, previous string, at int64, reason string) {
	b.log().Info("rotation", "ring", ring, "kid", kid, "previous_kid", previous, "activates_at", fmtTime(at), "reason", reason)
	b.metrics.rotations.WithLabelValues(ring, reason).Inc()
}

// recordOp logs and counts what an operation did, in one place.
func (b *backend) recordOp(ring, op string, res opResult) {
	switch {
	case op == "rollback":
		b.log().Info("rollback", "ring", ring, "kid", res.PromotedKID, "replaced_kid", res.PreviousKID, "until", fmtTime(res.ActivatesAt), "reason", "manual")
		b.metrics.rollbacks.WithLabelValues(ring).Inc()
	case res.Reason != "":
		b.rotated(ring, res.PromotedKID, res.PreviousKID, res.ActivatesAt, res.Reason)
		// Maintenance must not count this activation again.
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

const pathRotateHelpDesc = `
Promotes the pending key once it has been published for publish_lead (now, if
it already has; never later than it was already scheduled) and stocks a new
pending key. force=true promotes it now; revoke_active=true also revokes the
outgoing key. expected_active_kid makes a retried rotation a no-op. A
rotation that would make the ring publish more than 40 keys at once, or the
mount's JWKS pass 50 KiB, is refused with the time to retry.
`

const pathRevokeHelpDesc = `
Takes kid out of signing and the JWKS at once; it never comes back. Revoking
the active key promotes the next key at once (forced, if its lead is not
complete). Revoking the next pending key gives its slot to the key after it.
A revocation is never refused for a bound; revoked keys stay listed as
tombstones for verification_ttl. The kid of a trusted key (keys/<name>/trust)
removes it before its expires_at.
`

const pathRollbackHelpDesc = `
While the previous key is still published and within one rotation_period of
its retirement, and its private half is kept, makes it sign again until then;
the newer key returns to pending and activates at that time. A key takes part
in one rollback at most.
`
