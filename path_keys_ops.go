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
	return b.runOp(ctx, req, d.Get("name").(string), &ringRotate{
		force:        d.Get("force").(bool),
		revokeActive: d.Get("revoke_active").(bool),
		expected:     d.Get("expected_active_kid").(string),
	})
}

func (b *backend) pathRevoke(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.runOp(ctx, req, d.Get("name").(string), &ringRevoke{kid: d.Get("kid").(string)})
}

func (b *backend) pathRollback(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return b.runOp(ctx, req, d.Get("name").(string), &ringRollback{})
}

// ringOp is one operation on an existing ring: rotate, revoke and rollback
// here, trust in path_trust.go. runOp runs every one of them the same way.
type ringOp interface {
	// missing is the refusal when the ring does not exist (or is deleted).
	missing(name, mount string) error
	// check refuses the operation against the mount before the ring
	// changes (nil: nothing to check).
	check(ctx context.Context, s logical.Storage, snap *snapshot) error
	// apply is the pure operation on r, a copy of the stored ring, at now.
	apply(r *ringEntry, now int64) (opResult, error)
	// stocks reports whether the ring is stocked with pending keys after
	// apply, before the bounds are checked.
	stocks() bool
	// boundsField is the field a refusal for the bounds names, or "" when
	// the operation is never refused for them.
	boundsField() string
	// record logs and counts what a committed operation did.
	record(b *backend, ring string, res opResult)
	// answer is the response's data: the ring as the operation left it
	// (unchanged when res.Noop).
	answer(r *ringEntry, now int64, res opResult) map[string]any
}

// runOp runs op on the named ring under the write lock: load, check, operate
// on a copy, stock and settle it, check the bounds, commit, record, answer.
func (b *backend) runOp(ctx context.Context, req *logical.Request, name string, op ringOp) (*logical.Response, error) {
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, clk, err := b.state(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := clk.Schedule
	old := snap.rings[name]
	if old == nil || old.DeletedAt != 0 {
		return respond(op.missing(name, req.MountPoint))
	}
	if err := op.check(ctx, req.Storage, snap); err != nil {
		return respond(err)
	}
	r := old.clone()
	res, err := op.apply(r, now)
	if err != nil {
		return respond(err)
	}
	resp := &logical.Response{Data: map[string]any{}}
	for _, w := range res.Warnings {
		resp.AddWarning(w)
	}
	if res.Noop {
		resp.Data = op.answer(r, now, res)
		return resp, nil
	}
	if op.stocks() {
		planStock(r, now)
	}
	settle(r, now)
	if field := op.boundsField(); field != "" {
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
	op.record(b, r.Name, res)
	resp.Data = op.answer(r, now, res)
	return resp, nil
}

// lifecycleOp is what rotate, revoke and rollback share: a ring that does
// not exist is created with keys/<name>, nothing is checked against the
// mount first, and the ring is stocked after the operation.
type lifecycleOp struct{}

func (lifecycleOp) missing(name, mount string) error {
	return refuse("name", "no key ring %q; create it with vault write %skeys/%s", name, mount, name)
}

func (lifecycleOp) check(context.Context, logical.Storage, *snapshot) error { return nil }

func (lifecycleOp) stocks() bool { return true }

// kidsAnswer is the start of every lifecycle answer: the active and the
// pending kid of r at now.
func kidsAnswer(r *ringEntry, now int64) map[string]any {
	a, p := activeAndPending(r.Keys, now)
	return map[string]any{"active_kid": kidAt(r, a), "pending_kid": kidAt(r, p)}
}

// ringRotate is keys/<name>/rotate.
type ringRotate struct {
	lifecycleOp
	force, revokeActive bool
	expected            string
}

func (o *ringRotate) apply(r *ringEntry, now int64) (opResult, error) {
	return rotateOp(r, now, o.force, o.revokeActive, o.expected), nil
}

// boundsField: a rotation that revokes the outgoing key is never refused.
func (o *ringRotate) boundsField() string {
	if o.revokeActive {
		return ""
	}
	return "force"
}

func (o *ringRotate) record(b *backend, ring string, res opResult) {
	b.recordActivation(ring, res)
	b.recordRevocation(ring, res.Revoked, "rotate with revoke_active")
}

func (o *ringRotate) answer(r *ringEntry, now int64, res opResult) map[string]any {
	out := kidsAnswer(r, now)
	out["rotated"] = !res.Noop
	if !res.Noop {
		out["previous_kid"] = res.PreviousKID
		out["promoted_kid"] = res.PromotedKID
		out["activates_at"] = res.ActivatesAt
	}
	return out
}

// ringRevoke is keys/<name>/revoke; a revocation is never refused for a
// bound.
type ringRevoke struct {
	lifecycleOp
	kid string
}

func (o *ringRevoke) apply(r *ringEntry, now int64) (opResult, error) {
	return revokeOp(r, now, o.kid)
}

func (o *ringRevoke) boundsField() string { return "" }

func (o *ringRevoke) record(b *backend, ring string, res opResult) {
	b.recordActivation(ring, res)
	b.recordRevocation(ring, res.Revoked, "manual")
}

func (o *ringRevoke) answer(r *ringEntry, now int64, res opResult) map[string]any {
	out := kidsAnswer(r, now)
	out["revoked"] = res.Revoked
	return out
}

// ringRollback is keys/<name>/rollback.
type ringRollback struct{ lifecycleOp }

func (o *ringRollback) apply(r *ringEntry, now int64) (opResult, error) {
	return rollbackOp(r, now)
}

func (o *ringRollback) boundsField() string { return "rollback" }

func (o *ringRollback) record(b *backend, ring string, res opResult) {
	b.log().Info("rollback", "ring", ring, "kid", res.PromotedKID, "replaced_kid", res.PreviousKID, "until", fmtTime(res.ActivatesAt), "reason", "manual")
	b.metrics.rollbacks.WithLabelValues(ring).Inc()
}

func (o *ringRollback) answer(r *ringEntry, now int64, res opResult) map[string]any {
	out := kidsAnswer(r, now)
	out["activates_at"] = res.ActivatesAt
	return out
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

// recordActivation logs and counts the activation an operation made, if
// any (res.Reason names it).
func (b *backend) recordActivation(ring string, res opResult) {
	if res.Reason == "" {
		return
	}
	b.rotated(ring, res.PromotedKID, res.PreviousKID, res.ActivatesAt, res.Reason)
	// Maintenance must not count this activation again.
	b.manualKIDs[res.PromotedKID] = true
}

// recordRevocation logs and counts the revocation of kid ("": none).
func (b *backend) recordRevocation(ring, kid, reason string) {
	if kid == "" {
		return
	}
	b.log().Info("revocation", "ring", ring, "kid", kid, "reason", reason)
	b.metrics.revocations.WithLabelValues(ring).Inc()
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
