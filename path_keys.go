package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	defaultRotationPeriodSeconds  = int64(24 * 3600)
	defaultVerificationTTLSeconds = int64(24 * 3600)
	defaultRSABits                = 2048
	minRotationPeriodSeconds      = int64(10)
	// clockSkewSeconds is the margin between a token's expiry and its key's
	// removal.
	clockSkewSeconds = int64(60)
	// maxPeriodsPublished bounds (publish_lead + verification_ttl) / rotation_period.
	maxPeriodsPublished = 10
)

// ringNameField is the name of the ring every keys/<name> path acts on.
var ringNameField = &framework.FieldSchema{
	Type:        framework.TypeLowerCaseString,
	Description: "Name of the key ring.",
	Required:    true,
}

func pathKeys(b *backend) []*framework.Path {
	nameField := ringNameField
	return append(pathKeyOps(b, nameField), []*framework.Path{
		{
			Pattern: "keys/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "keys",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: op(b.pathKeysList, "list", "keys", "List the rings of this mount.", map[string]*framework.FieldSchema{
					"keys": {Type: framework.TypeStringSlice, Description: "Ring names."},
				}),
			},
			HelpSynopsis:    "List key rings.",
			HelpDescription: "Lists the names of the key rings of this mount.",
		},
		{
			Pattern: "keys/" + framework.GenericNameRegex("name") + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "key",
			},
			Fields: withRingSettings(map[string]*framework.FieldSchema{
				"name": nameField,
				"force": {
					Type:        framework.TypeBool,
					Description: "On delete only: remove the ring's keys from the JWKS at once instead of at their remove_at.",
				},
			}),
			ExistenceCheck: b.ringExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   op(b.pathKeyRead, "read", "key", "Read a ring's settings and its keys' states.", ringAnswer),
				logical.CreateOperation: writeOp(b.pathKeyWrite, "write", "key", "Create a ring, or change its settings.", ringAnswer),
				logical.UpdateOperation: writeOp(b.pathKeyWrite, "write", "key", "Create a ring, or change its settings.", ringAnswer),
				logical.DeleteOperation: writeOp(b.pathKeyDelete, "delete", "key", "Stop a ring signing; its keys leave the JWKS at their remove_at (force=true: at once).", nil),
			},
			HelpSynopsis:    pathKeysHelpSyn,
			HelpDescription: pathKeysHelpDesc,
		},
	}...)
}

// ringSettingFields are the settings of a ring, written to keys/<name> and
// given to an import (keys/<name>/import) that creates one.
func ringSettingFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"algorithm": {
			Type:        framework.TypeString,
			Default:     "RS256",
			Description: "Signing algorithm: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA. A change applies to newly generated keys only; each kid keeps its algorithm for life.",
		},
		"rsa_bits": {
			Type:        framework.TypeInt,
			Default:     defaultRSABits,
			Description: "RSA modulus size for RS* and PS* algorithms: 2048, 3072 or 4096.",
		},
		"rotation_period": {
			Type:        framework.TypeDurationSecond,
			Default:     durationDefault(defaultRotationPeriodSeconds),
			Description: "How long each key signs before its successor takes over. At least 10s.",
		},
		"verification_ttl": {
			Type:        framework.TypeDurationSecond,
			Default:     durationDefault(defaultVerificationTTLSeconds),
			Description: fmt.Sprintf("How long a key stays in the JWKS after it stops signing. At least the longest max_ttl of the roles using the ring plus %ds.", clockSkewSeconds),
		},
		"publish_lead": {
			Type:        framework.TypeDurationSecond,
			Description: "How long a key is in the JWKS before it may sign. Defaults to rotation_period; at least 2 x jwks_max_age. Cover the slowest verifier's refresh interval.",
		},
		"min_verifier_coverage": {
			Type:        framework.TypeFloat,
			Default:     0,
			Description: "Activation gate: share (0 to 1) of declared verifiers that must hold a pending key before it activates. 0 turns the gate off.",
		},
		"max_activation_delay": {
			Type:        framework.TypeDurationSecond,
			Default:     durationDefault(0),
			Description: "Activation gate: the longest a pending key may wait for verifier coverage; at most rotation_period.",
		},
	}
}

// withRingSettings adds the ring settings to fields.
func withRingSettings(fields map[string]*framework.FieldSchema) map[string]*framework.FieldSchema {
	for k, v := range ringSettingFields() {
		fields[k] = v
	}
	return fields
}

// ringAnswer is what reads and writes of keys/<name> answer: the settings as
// written, then computed state.
var ringAnswer = map[string]*framework.FieldSchema{
	"algorithm":             {Type: framework.TypeString, Description: "Signing algorithm of new keys.", Required: true},
	"rsa_bits":              {Type: framework.TypeInt, Description: "RSA modulus size of new RS*/PS* keys.", Required: true},
	"rotation_period":       {Type: framework.TypeDurationSecond, Description: "How long each key signs (seconds).", Required: true},
	"verification_ttl":      {Type: framework.TypeDurationSecond, Description: "How long a key stays in the JWKS after it stops signing (seconds).", Required: true},
	"publish_lead":          {Type: framework.TypeDurationSecond, Description: "How long a key is in the JWKS before it may sign (seconds).", Required: true},
	"min_verifier_coverage": {Type: framework.TypeFloat, Description: "Activation gate: share of declared verifiers that must hold a pending key.", Required: true},
	"max_activation_delay":  {Type: framework.TypeDurationSecond, Description: "Activation gate: the longest a pending key may wait (seconds).", Required: true},
	"key_summary":           {Type: framework.TypeStringSlice, Description: "One line per key for reading by eye (vault read's table): kid, state, alg, then publish_at, activate_at, retire_at, remove_at (RFC 3339, - = not scheduled), revoked_at if revoked, forced, imported; trusted keys last with state=trusted, added_at, expires_at. signing_keys and trusted_keys hold the same figures for programs.", Required: true},
	"signing_keys":          {Type: framework.TypeSlice, Description: "Every key: kid, alg, thumbprint (RFC 7638; the kid unless the key was imported under another), state, publish_at, activate_at, retire_at, remove_at, revoked_at (Unix seconds, 0 = not scheduled), forced, imported, gate_note.", Required: true},
	"trusted_keys":          {Type: framework.TypeSlice, Description: "Verify-only public keys of an adopted issuer (keys/<name>/trust): kid, alg, thumbprint, added_at, expires_at (Unix seconds). Published until expires_at; they never sign.", Required: true},
	"active_kid":            {Type: framework.TypeString, Description: "The kid that signs now (\"\" before the first activation).", Required: true},
	"pending_kid":           {Type: framework.TypeString, Description: "The kid that activates next.", Required: true},
	"next_rotation":         {Type: framework.TypeInt64, Description: "When the pending key activates (Unix seconds, 0 = none pending).", Required: true},
}

func (b *backend) ringExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return false, err
	}
	r := snap.rings[d.Get("name").(string)]
	return r != nil && r.DeletedAt == 0, nil
}

func (b *backend) pathKeysList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, n := range slices.Sorted(maps.Keys(snap.rings)) {
		if snap.rings[n].DeletedAt == 0 {
			names = append(names, n)
		}
	}
	return logical.ListResponse(names), nil
}

func (b *backend) pathKeyRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	r := snap.rings[d.Get("name").(string)]
	if r == nil || r.DeletedAt != 0 {
		return nil, nil
	}
	now := b.now()
	resp := &logical.Response{Data: ringData(r, now)}
	for i := range r.Keys {
		if k := &r.Keys[i]; k.GateOrigin != 0 && k.state(now) == statePending {
			resp.AddWarning(fmt.Sprintf("key %s: %s", k.KID, k.GateNote))
		}
	}
	return resp, nil
}

// ringData is the read form of a ring: its settings exactly as written, then
// computed state.
func ringData(r *ringEntry, now int64) map[string]any {
	keys := make([]map[string]any, 0, len(r.Keys))
	nextRotation := int64(0)
	activeKID, pendingKID := "", ""
	for i := range r.Keys {
		k := &r.Keys[i]
		st := k.state(now)
		keys = append(keys, map[string]any{
			"kid":         k.KID,
			"alg":         k.Alg,
			"thumbprint":  k.thumbprint(),
			"imported":    k.Imported,
			"state":       st,
			"publish_at":  k.PublishAt,
			"activate_at": k.ActivateAt,
			"retire_at":   k.RetireAt,
			"remove_at":   k.RemoveAt,
			"revoked_at":  k.RevokedAt,
			"forced":      k.Forced,
			"gate_note":   k.GateNote,
		})
		switch {
		case st == stateActive:
			activeKID = k.KID
		case st == statePending && pendingKID == "":
			pendingKID = k.KID
			nextRotation = k.ActivateAt
		}
	}
	trusted := make([]map[string]any, 0, len(r.Trusted))
	for i := range r.Trusted {
		t := &r.Trusted[i]
		trusted = append(trusted, map[string]any{
			"kid": t.KID, "alg": t.Alg, "thumbprint": t.Thumbprint, "added_at": t.AddedAt, "expires_at": t.ExpiresAt,
		})
	}
	return map[string]any{
		"key_summary":           keySummary(r, now),
		"trusted_keys":          trusted,
		"min_verifier_coverage": r.MinVerifierCoverage,
		"max_activation_delay":  r.MaxActivationDelay,
		"algorithm":             r.Algorithm,
		"rsa_bits":              r.RSABits,
		"rotation_period":       r.RotationPeriod,
		"verification_ttl":      r.VerificationTTL,
		"publish_lead":          r.PublishLead,
		"signing_keys":          keys,
		"active_kid":            activeKID,
		"pending_kid":           pendingKID,
		"next_rotation":         nextRotation,
	}
}

// keySummary is one line per key of r, for an operator reading the ring in
// vault read's table, which prints nested objects as Go maps.
func keySummary(r *ringEntry, now int64) []string {
	out := make([]string, 0, len(r.Keys)+len(r.Trusted))
	for i := range r.Keys {
		k := &r.Keys[i]
		line := fmt.Sprintf("kid=%s state=%s alg=%s publish_at=%s activate_at=%s retire_at=%s remove_at=%s",
			k.KID, k.state(now), k.Alg, lineTime(k.PublishAt), lineTime(k.ActivateAt), lineTime(k.RetireAt), lineTime(k.RemoveAt))
		if k.RevokedAt != 0 {
			line += " revoked_at=" + lineTime(k.RevokedAt)
		}
		if k.Forced {
			line += " forced"
		}
		if k.Imported {
			line += " imported"
		}
		out = append(out, line)
	}
	for i := range r.Trusted {
		t := &r.Trusted[i]
		out = append(out, fmt.Sprintf("kid=%s state=trusted alg=%s added_at=%s expires_at=%s", t.KID, t.Alg, lineTime(t.AddedAt), lineTime(t.ExpiresAt)))
	}
	return out
}

// lineTime is a Unix time in a summary line: RFC 3339 in UTC, or - when
// not scheduled.
func lineTime(t int64) string {
	if t == 0 || t == forever {
		return "-"
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}

func (b *backend) pathKeyWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if _, ok := d.GetOk("force"); ok {
		return respond(refuse("force", "applies only to delete (vault delete %s force=true); remove it from this write", req.Path))
	}
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := b.now()
	old := snap.rings[name]
	if old != nil && old.DeletedAt != 0 {
		return respond(refuse("name", "ring %q was deleted and its keys stay in the JWKS until %s; choose another name, or delete it with force=true to drop them at once", name, fmtTime(lastRemoval(old))))
	}
	r := newRing(name, now)
	if old != nil {
		r = old.clone()
		r.Version = schemaVersion
	}
	readRingSettings(r, d, old != nil)
	if err := b.checkRingSettings(snap, r); err != nil {
		return respond(err)
	}

	res := settingsOp(old, r, now)
	field := "rotation_period"
	if res.ActivatesAt != 0 || old == nil {
		field = "algorithm"
	}
	if err := checkBounds(snap, r, now, field); err != nil {
		return respond(err)
	}
	warnings, _, err := b.commitRing(ctx, req.Storage, old, r, now)
	if err != nil {
		return nil, err
	}
	resp := &logical.Response{Data: ringData(r, now)}
	if res.ActivatesAt != 0 {
		resp.AddWarning(fmt.Sprintf("the first %s key %s activates at %s; keys generated before keep their algorithm until they retire", r.Algorithm, kidActivatingAt(r, res.ActivatesAt), fmtTime(res.ActivatesAt)))
	}
	for _, w := range append(res.Warnings, warnings...) {
		resp.AddWarning(w)
	}
	return resp, nil
}

// newRing is a ring with the default settings, created at now.
func newRing(name string, now int64) *ringEntry {
	return &ringEntry{
		Version: schemaVersion, Name: name, Algorithm: "RS256", RSABits: defaultRSABits,
		RotationPeriod: defaultRotationPeriodSeconds, VerificationTTL: defaultVerificationTTLSeconds, CreatedAt: now,
	}
}

// readRingSettings sets the settings d gives on r. publish_lead defaults to
// rotation_period when a ring is created; an existing ring keeps its own.
func readRingSettings(r *ringEntry, d *framework.FieldData, exists bool) {
	leadSet := exists
	if v, ok := d.GetOk("algorithm"); ok {
		r.Algorithm = v.(string)
	}
	if v, ok := d.GetOk("rsa_bits"); ok {
		r.RSABits = v.(int)
	}
	if v, ok := d.GetOk("rotation_period"); ok {
		r.RotationPeriod = int64(v.(int))
	}
	if v, ok := d.GetOk("verification_ttl"); ok {
		r.VerificationTTL = int64(v.(int))
	}
	if v, ok := d.GetOk("publish_lead"); ok {
		r.PublishLead = int64(v.(int))
		leadSet = true
	}
	if !leadSet {
		r.PublishLead = r.RotationPeriod
	}
	if v, ok := d.GetOk("min_verifier_coverage"); ok {
		r.MinVerifierCoverage = v.(float64)
	}
	if v, ok := d.GetOk("max_activation_delay"); ok {
		r.MaxActivationDelay = int64(v.(int))
	}
}

// checkRingSettings validates a ring's settings against their bounds, the
// config and the roles that use it. It returns a message for the caller, or
// "".
func (b *backend) checkRingSettings(snap *snapshot, r *ringEntry) error {
	if !validAlgorithm(r.Algorithm) {
		return refuse("algorithm", "%q is not supported; use one of %s (HMAC and none are never allowed)", r.Algorithm, strings.Join(supportedAlgorithms, ", "))
	}
	okBits := false
	for _, n := range supportedRSABits {
		okBits = okBits || n == r.RSABits
	}
	if !okBits {
		return refuse("rsa_bits", "%d is not supported; use 2048, 3072 or 4096", r.RSABits)
	}
	if r.RotationPeriod < minRotationPeriodSeconds {
		return refuse("rotation_period", "%ds is below the 10s minimum; use at least 10s (periods under an hour are for tests and drills)", r.RotationPeriod)
	}
	if r.MinVerifierCoverage < 0 || r.MinVerifierCoverage > 1 {
		return refuse("min_verifier_coverage", "%v is outside 0 to 1; give the share of declared verifiers that must hold a key before it activates, such as 0.9 (0 turns the gate off)", r.MinVerifierCoverage)
	}
	if r.MaxActivationDelay > r.RotationPeriod {
		return refuse("max_activation_delay", "%ds is above rotation_period (%ds); the gate may delay an activation by at most one period, so lower it", r.MaxActivationDelay, r.RotationPeriod)
	}
	if r.MinVerifierCoverage > 0 && r.MaxActivationDelay == 0 {
		return refuse("max_activation_delay", "must be above 0 when min_verifier_coverage is set, or the gate could never wait; give the longest wait, such as 1h")
	}
	maxAge := snap.config.JWKSMaxAge
	if r.PublishLead < 2*maxAge {
		return refuse("publish_lead", "%ds is below 2 x jwks_max_age (%ds), so a verifier honouring Cache-Control could miss the new key; set publish_lead to at least %ds, or lower config jwks_max_age to at most %ds first (a short rotation_period needs a short jwks_max_age)", r.PublishLead, maxAge, 2*maxAge, r.PublishLead/2)
	}
	minV := clockSkewSeconds + 1
	var longest string
	for _, rn := range slices.Sorted(maps.Keys(snap.roles)) {
		role := snap.roles[rn]
		if role.Key == r.Name && role.MaxTTL+clockSkewSeconds > minV {
			minV, longest = role.MaxTTL+clockSkewSeconds, rn
		}
	}
	if r.VerificationTTL < minV {
		if longest != "" {
			return refuse("verification_ttl", "%ds is below role %q max_ttl plus %ds of clock skew (%ds), so its tokens could outlive their key in the JWKS; set verification_ttl to at least %ds or lower that role's max_ttl first", r.VerificationTTL, longest, clockSkewSeconds, minV, minV)
		}
		return refuse("verification_ttl", "%ds is below the %ds minimum (%ds of clock skew plus a token life of at least 1s); set at least %ds", r.VerificationTTL, minV, clockSkewSeconds, minV)
	}
	if r.PublishLead+r.VerificationTTL > maxPeriodsPublished*r.RotationPeriod {
		return refuse("rotation_period", "(publish_lead %ds + verification_ttl %ds) / rotation_period %ds is above %d, which would publish too many keys at once; lengthen rotation_period to at least %ds or shorten publish_lead or verification_ttl",
			r.PublishLead, r.VerificationTTL, r.RotationPeriod, maxPeriodsPublished, (r.PublishLead+r.VerificationTTL+maxPeriodsPublished-1)/maxPeriodsPublished)
	}
	return nil
}

// lastRemoval is when the last key of r, signing or trusted, leaves the
// JWKS (0: none is scheduled to).
func lastRemoval(r *ringEntry) int64 {
	var t int64
	for i := range r.Keys {
		if rm := r.Keys[i].RemoveAt; rm > t && !r.Keys[i].revoked() {
			t = rm
		}
	}
	for i := range r.Trusted {
		t = max(t, r.Trusted[i].ExpiresAt)
	}
	return t
}

func (b *backend) pathKeyDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	force := d.Get("force").(bool)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if users := namesWhere(snap.roles, func(r *roleEntry) bool { return r.Key == name }); len(users) > 0 {
		return respond(refuse("name", "ring %q is used by role(s) %s; delete those roles or point them at another ring first", name, strings.Join(users, ", ")))
	}
	if publishers := namesWhere(snap.publishers, func(p *publisherEntry) bool { return p.Ring == name }); len(publishers) > 0 {
		return respond(refuse("name", "ring %q is published by publisher(s) %s; delete those publishers or point them at another ring first", name, strings.Join(publishers, ", ")))
	}
	old := snap.rings[name]
	if old == nil {
		return nil, nil
	}
	now := b.now()
	if force {
		warnings, err := b.dropRing(ctx, req.Storage, old, now)
		if err != nil {
			return nil, err
		}
		b.log().Info("key ring deleted", "ring", name, "force", true)
		return warningsResponse(warnings), nil
	}
	if old.DeletedAt != 0 {
		return nil, nil
	}
	r := old.clone()
	deleteOp(r, now)
	if !ringPublished(r, now) || lastRemoval(r) <= now {
		// Nothing ever signed: no token can need these keys.
		warnings, err := b.dropRing(ctx, req.Storage, old, now)
		if err != nil {
			return nil, err
		}
		b.log().Info("key ring deleted", "ring", name, "reason", "no key had signed")
		return warningsResponse(warnings), nil
	}
	warnings, _, err := b.commitRing(ctx, req.Storage, old, r, now)
	if err != nil {
		return nil, err
	}
	b.log().Info("key ring deleted; its keys leave the JWKS at their remove_at", "ring", name, "until", fmtTime(lastRemoval(r)))
	resp := &logical.Response{Warnings: warnings}
	resp.AddWarning(fmt.Sprintf("ring %q no longer signs; its keys stay in the JWKS until %s so tokens already issued keep verifying (delete with force=true to remove them now)", name, fmtTime(lastRemoval(r))))
	return resp, nil
}

// warningsResponse is a response carrying only warnings, or nil (204) for
// none.
func warningsResponse(warnings []string) *logical.Response {
	if len(warnings) == 0 {
		return nil
	}
	return &logical.Response{Warnings: warnings}
}

const pathKeysHelpSyn = `Manage a key ring: its algorithm and rotation schedule.`

const pathKeysHelpDesc = `
A key ring holds the signing keys of one schedule. Every key is published in
the JWKS for at least publish_lead before it signs (the first key of a new
ring too), signs for rotation_period, and stays published for verification_ttl
after it stops signing. Maintenance stocks new keys ahead of time; reads show
every key with its state and timestamps (Unix seconds, 0 = not scheduled yet).

Delete is refused while a role uses the ring. Otherwise the ring stops signing
at once and its keys leave the JWKS at their remove_at; force=true removes
them at once.
`
