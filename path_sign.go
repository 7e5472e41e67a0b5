package jwtrotor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/identitytpl"
	"github.com/hashicorp/vault/sdk/logical"
)

// maxBatch bounds batch_input, so one request cannot hold the plugin for long.
const maxBatch = 100

var signFields = map[string]*framework.FieldSchema{
	"claims": {
		Type:        framework.TypeMap,
		Description: "Claims to add (an object, or a JSON object as a string). Each name must be in the role's allowed_claims.",
	},
	"audience": {
		Type:        framework.TypeCommaStringSlice,
		Description: "One or more of the role's audiences. Default: all of them.",
	},
	"subject": {
		Type:        framework.TypeString,
		Description: "Subject to use instead of the role's subject_template; must match the role's allowed_subjects.",
	},
	"ttl": {
		Type:        framework.TypeDurationSecond,
		Description: "Token lifetime, at most the role's max_ttl. Default: the role's ttl.",
	},
}

func pathSign(b *backend) *framework.Path {
	fields := map[string]*framework.FieldSchema{
		"role": {Type: framework.TypeLowerCaseString, Description: "Role to sign under.", Required: true},
		"batch_input": {
			Type:        framework.TypeSlice,
			Description: fmt.Sprintf("Up to %d objects with the fields claims, audience, subject and ttl; each is signed like a single request and answered in batch_results, in order, with token or error.", maxBatch),
		},
	}
	for k, v := range signFields {
		fields[k] = v
	}
	return &framework.Path{
		Pattern: "sign/" + framework.GenericNameRegex("role") + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationVerb:   "sign",
		},
		Fields: fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			// Not forwarded: performance standbys sign with their copy of
			// the keys.
			logical.UpdateOperation: op(b.pathSign, "sign", "", "Sign a JWT under a role, or up to 100 with batch_input.", withField(tokenAnswer, "batch_results", &framework.FieldSchema{Type: framework.TypeSlice, Description: "With batch_input: one object per item, in order, with the fields above or error."})),
		},
		HelpSynopsis:    pathSignHelpSyn,
		HelpDescription: pathSignHelpDesc,
	}
}

// tokenAnswer is what a single token is answered with, by sign and by a
// read of token/<role>.
var tokenAnswer = map[string]*framework.FieldSchema{
	"token":      {Type: framework.TypeString, Description: "The signed JWT (compact serialization)."},
	"kid":        {Type: framework.TypeString, Description: "The kid of the key that signed it."},
	"jti":        {Type: framework.TypeString, Description: "Its jti claim."},
	"issued_at":  {Type: framework.TypeInt64, Description: "Its iat and nbf (Unix seconds)."},
	"expires_at": {Type: framework.TypeInt64, Description: "Its exp (Unix seconds)."},
}

// signRequest is one token to issue, from a request or a batch item.
type signRequest struct {
	claims   map[string]any
	audience []string
	subject  string
	ttl      int64
	ttlSet   bool
}

func (b *backend) pathSign(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	s, err := b.newSigner(ctx, req, d.Get("role").(string))
	if err != nil {
		return respond(err)
	}
	if raw, ok := d.GetOk("batch_input"); ok {
		for k := range signFields {
			if _, set := req.Data[k]; set {
				return respond(refuse(k, "give it inside each batch_input item, not beside batch_input"))
			}
		}
		items := raw.([]any)
		if len(items) == 0 || len(items) > maxBatch {
			return respond(refuse("batch_input", "%d items; give 1 to %d", len(items), maxBatch))
		}
		results := make([]map[string]any, len(items))
		for i, it := range items {
			sr, err := parseBatchItem(it)
			var warnings []string
			if err == nil {
				results[i], warnings, err = s.sign(sr)
			}
			if len(warnings) > 0 {
				// A batch item carries its warnings in its own result.
				results[i]["warning"] = strings.Join(warnings, "; ")
			}
			switch {
			case isRefusal(err):
				// A refused item fails alone.
				results[i] = map[string]any{"error": err.Error()}
			case err != nil:
				return nil, err
			}
		}
		return &logical.Response{Data: map[string]any{"batch_results": results}}, nil
	}
	sr := &signRequest{subject: d.Get("subject").(string)}
	if v, ok := d.GetOk("claims"); ok {
		sr.claims = v.(map[string]any)
	}
	if v, ok := d.GetOk("audience"); ok {
		sr.audience = v.([]string)
	}
	if v, ok := d.GetOk("ttl"); ok {
		sr.ttl, sr.ttlSet = int64(v.(int)), true
	}
	return s.signOne(sr)
}

// newSigner looks up the role and checks what every token needs before its
// own fields are read: the role exists and the issuer is set. With no signer
// it returns a refusal or the error of loading the snapshot.
func (b *backend) newSigner(ctx context.Context, req *logical.Request, roleName string) (*signer, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	role := snap.roles[roleName]
	if role == nil {
		return nil, refuse("role", "no role %q; create it with vault write %sroles/%s", roleName, req.MountPoint, roleName)
	}
	if snap.config.Issuer == "" {
		return nil, refuse("issuer", "not configured; set it first with vault write %sconfig issuer=<VAULT_ADDR>/v1/%s", req.MountPoint, strings.TrimSuffix(req.MountPoint, "/"))
	}
	return &signer{b: b, ctx: ctx, req: req, snap: snap, role: role, roleName: roleName}, nil
}

// signOne signs a single token and answers it in the data envelope, with a
// shortened ttl reported as a warning.
func (s *signer) signOne(sr *signRequest) (*logical.Response, error) {
	out, warnings, err := s.sign(sr)
	if err != nil {
		return respond(err)
	}
	resp := &logical.Response{Data: out}
	if len(warnings) > 0 {
		resp.AddWarning(strings.Join(warnings, "; "))
	}
	return resp, nil
}

// parseBatchItem checks one batch item with the same rules as a request.
func parseBatchItem(it any) (*signRequest, error) {
	m, ok := it.(map[string]any)
	if !ok {
		return nil, refuse("batch_input item", "expected an object with claims, audience, subject or ttl")
	}
	sr := &signRequest{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		raw := m[k]
		schema, ok := signFields[k]
		if !ok {
			return nil, refuse(k, "unknown field; a batch item accepts claims, audience, subject and ttl")
		}
		v, err := checkValue(k, schema.Type, raw)
		if err != nil {
			return nil, err
		}
		if v == nil {
			v = raw
		}
		ok = false
		switch k {
		case "claims":
			sr.claims, ok = v.(map[string]any)
		case "audience":
			sr.audience, ok = v.([]string)
		case "subject":
			sr.subject, ok = v.(string)
		case "ttl":
			sr.ttl, ok = v.(int64)
			sr.ttlSet = true
		}
		if !ok {
			// checkValue let through a value of a shape it does not convert.
			return nil, refuse(k, "expected %s, got %s", schema.Type, typeName(raw))
		}
	}
	return sr, nil
}

// signer issues tokens for one request against one consistent snapshot.
type signer struct {
	b    *backend
	ctx  context.Context
	req  *logical.Request
	snap *snapshot
	role *roleEntry
	// roleName is the role's name, from the request's role field.
	roleName string
	// entity subject, rendered once per request
	subject    string
	subjectErr error
	rendered   bool
}

// maxSignAttempts bounds how often one sign follows writes that keep
// deleting its key's private half under it.
const maxSignAttempts = 3

// sign checks one token request against the role and signs it. It returns
// the response fields and the warnings to give with them, a refusal (a
// fieldError), or an internal error.
func (s *signer) sign(sr *signRequest) (map[string]any, []string, error) {
	for attempt := 1; ; attempt++ {
		out, warnings, err := s.signFrom(sr)
		if !errors.Is(err, errPrivateGone) || attempt == maxSignAttempts {
			return out, warnings, err
		}
		// A write retired or revoked the snapshot's active key and deleted
		// its private half while this request was signing: sign from the
		// state that write left. Storage that lost the private half of
		// the current active key is an error.
		snap, lerr := s.b.load(s.ctx, s.req.Storage)
		if lerr != nil {
			return nil, nil, lerr
		}
		if snap.gen == s.snap.gen {
			// No newer state is known here, yet the private half is
			// gone: on a standby, the invalidation of the write that
			// deleted it may not have arrived. Read the ring again from
			// storage before taking the half for lost.
			s.b.invalidate(s.ctx, ringPrefix+s.role.Key)
			if snap, lerr = s.b.load(s.ctx, s.req.Storage); lerr != nil {
				return nil, nil, lerr
			}
		}
		s.snap = snap
	}
}

// signFrom signs one token with the active key of the signer's snapshot:
// the role's policy (checkClaims, checkAudience, chooseSubject), the key
// and the lifetime (chooseTimes), the claims (tokenClaims), the signature
// (signClaims).
func (s *signer) signFrom(sr *signRequest) (map[string]any, []string, error) {
	ring := s.snap.rings[s.role.Key]
	if ring == nil || ring.DeletedAt != 0 {
		return nil, nil, refuse("key", "the role's key ring %q does not exist; point the role at an existing ring", s.role.Key)
	}
	if err := s.checkClaims(sr.claims); err != nil {
		return nil, nil, err
	}
	aud, err := s.checkAudience(sr.audience)
	if err != nil {
		return nil, nil, err
	}
	sub, err := s.chooseSubject(sr.subject)
	if err != nil {
		return nil, nil, err
	}
	tt, err := s.chooseTimes(ring, sr)
	if err != nil {
		return nil, nil, err
	}
	jti, err := randomID()
	if err != nil {
		return nil, nil, err
	}
	token, err := s.signClaims(ring.Name, tt.key, s.tokenClaims(sr.claims, aud, sub, tt, jti))
	if err != nil {
		return nil, nil, err
	}
	s.b.metrics.signedCounter(ring.Name, tt.key.KID).Inc()
	out := map[string]any{
		"token":      token,
		"kid":        tt.key.KID,
		"jti":        jti,
		"issued_at":  tt.issued,
		"expires_at": tt.exp,
	}
	return out, tt.warnings, nil
}

// checkClaims applies the role's policy to the claims a caller adds: no
// reserved claim, no static claim of the role in any case, and only the
// role's allowed_claims.
func (s *signer) checkClaims(claims map[string]any) error {
	role := s.role
	if err := checkClaimsObject("claims", claims); err != nil {
		return err
	}
	for name := range claims {
		if isReserved(name) {
			return refuse("claims", "%q is reserved and set by the plugin; remove it (use audience=, subject= and ttl= instead)", name)
		}
		if static, ok := staticClaimNamed(role.Claims, name); ok {
			return refuse("claims", "%q is the static claim %q of role %q (names are compared in any case) and cannot be overridden; remove it", name, static, s.roleName)
		}
		if !slices.Contains(role.AllowedClaims, name) {
			// Case variants of static claims are refused above; allowed
			// names match exactly.
			if len(role.AllowedClaims) == 0 {
				return refuse("claims", "%q is not allowed: the role's allowed_claims is empty, so callers may add no claims; remove it or add it to the role's allowed_claims", name)
			}
			return refuse("claims", "%q is not in the role's allowed_claims (%s); remove it or add it to the role", name, strings.Join(role.AllowedClaims, ", "))
		}
	}
	return nil
}

// checkAudience returns the audience of the token: the caller's choice
// among the role's audiences, or all of them.
func (s *signer) checkAudience(asked []string) ([]string, error) {
	role := s.role
	if len(asked) == 0 {
		return role.Audiences, nil
	}
	for _, a := range asked {
		if !slices.Contains(role.Audiences, a) {
			return nil, refuse("audience", "%q is not one of the role's audiences (%s); pick from those", a, strings.Join(role.Audiences, ", "))
		}
	}
	return dedupe(asked), nil
}

// chooseSubject returns the subject of the token: the caller's, if the
// role's allowed_subjects let it choose, or the role's subject_template
// rendered for the caller.
func (s *signer) chooseSubject(asked string) (string, error) {
	role := s.role
	if len(asked) > maxSubjectLen {
		return "", refuse("subject", "%d bytes is longer than the %d-byte limit", len(asked), maxSubjectLen)
	}
	if asked == "" {
		sub := s.renderSubject()
		if sub == "" {
			return "", s.subjectErr
		}
		return sub, nil
	}
	ok := false
	for _, g := range role.AllowedSubjects {
		ok = ok || globMatch(g, asked)
	}
	if !ok {
		if len(role.AllowedSubjects) == 0 {
			return "", refuse("subject", "this role does not let callers choose the subject (allowed_subjects is empty); remove subject")
		}
		return "", refuse("subject", "%q matches none of the role's allowed_subjects (%s)", asked, strings.Join(role.AllowedSubjects, ", "))
	}
	return asked, nil
}

// tokenTimes is the key that signs a token, the token's times, and the
// warnings about them.
type tokenTimes struct {
	key         *signingKey
	issued, exp int64
	warnings    []string
}

// chooseTimes picks the key that signs, ring's active key, and the token's
// lifetime: the role's ttl or the caller's, at most max_ttl, and ending
// clockSkewSeconds before the key leaves the JWKS.
func (s *signer) chooseTimes(ring *ringEntry, sr *signRequest) (*tokenTimes, error) {
	role := s.role
	ttl := role.TTL
	if sr.ttlSet {
		ttl = sr.ttl
	}
	if ttl < 1 {
		return nil, refuse("ttl", "must be at least 1s")
	}
	if ttl > role.MaxTTL {
		return nil, refuse("ttl", "%ds is above the role's max_ttl (%ds); ask for at most %ds", ttl, role.MaxTTL, role.MaxTTL)
	}

	// Key states follow the high-water time (never backwards); the token's
	// own times are Vault's clock, as verifiers compare them with theirs.
	clk := s.b.clock.read()
	now, issued := clk.Schedule, clk.Token
	a := activeIndex(ring.Keys, now)
	if a < 0 {
		return nil, noActiveKey(ring, now)
	}
	key := &ring.Keys[a]
	exp := issued + ttl
	var warnings []string
	// Overlap: no token outlives its key's publication.
	if limit := key.removeAt() - clockSkewSeconds; key.RemoveAt != 0 && exp > limit {
		exp = limit
		warnings = append(warnings, fmt.Sprintf("ttl shortened to %ds so the token expires %ds before its key leaves the JWKS", exp-issued, clockSkewSeconds))
	}
	if exp <= issued {
		return nil, fmt.Errorf("ring %q: active key %s leaves the JWKS too soon to sign", ring.Name, key.KID)
	}
	if clk.HeldSeconds > 0 {
		warnings = append(warnings, fmt.Sprintf("the key schedule is held %ds behind this node's wall clock after an unexplained forward step; iat and exp follow the schedule (see %sclock)", clk.HeldSeconds, s.req.MountPoint))
	}
	return &tokenTimes{key: key, issued: issued, exp: exp, warnings: warnings}, nil
}

// noActiveKey is the refusal of a sign while ring has no active key yet.
func noActiveKey(ring *ringEntry, now int64) error {
	next := int64(0)
	for i := range ring.Keys {
		if ring.Keys[i].state(now) == statePending {
			next = ring.Keys[i].ActivateAt
			break
		}
	}
	return refuse("key", "ring %q has no active key yet; its first key signs from %s, once published for publish_lead (write keys/%s/rotate force=true to sign now)", ring.Name, fmtTime(next), ring.Name)
}

// tokenClaims are the claims of the token: the role's static claims, the
// caller's, and the reserved claims the plugin sets.
func (s *signer) tokenClaims(extra map[string]any, aud []string, sub string, tt *tokenTimes, jti string) map[string]any {
	claims := make(map[string]any, len(s.role.Claims)+len(extra)+len(reservedClaims))
	for k, v := range s.role.Claims {
		claims[k] = v
	}
	for k, v := range extra {
		claims[k] = v
	}
	claims["iss"] = s.snap.config.Issuer
	claims["sub"] = sub
	if len(aud) == 1 {
		claims["aud"] = aud[0]
	} else {
		claims["aud"] = aud
	}
	claims["iat"] = tt.issued
	claims["nbf"] = tt.issued
	claims["exp"] = tt.exp
	claims["jti"] = jti
	return claims
}

// signClaims signs claims with key of ring as the role's token type and
// returns the compact token.
func (s *signer) signClaims(ring string, key *signingKey, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	js, err := s.b.joseSigner(s.ctx, s.req.Storage, ring, key, s.role.TokenType)
	if err != nil {
		return "", err
	}
	obj, err := js.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign with %s: %w", key.KID, err)
	}
	token, err := obj.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("serialize token: %w", err)
	}
	return token, nil
}

// renderSubject renders the role's subject template for the caller's
// entity, once per request. On failure it returns "" and sets subjectErr.
func (s *signer) renderSubject() string {
	if s.rendered {
		return s.subject
	}
	s.rendered = true
	t := s.role.SubjectTemplate
	if !strings.Contains(t, "{{") {
		s.subject = t
		return t
	}
	if s.req.EntityID == "" {
		s.subjectErr = refuse("subject", "the calling token has no Vault entity, and the role's subject_template needs one; log in through an auth method that creates entities (such as approle or userpass), or give the role a static subject_template or allowed_subjects")
		return ""
	}
	// The default template needs only the entity id, which the request
	// carries: no call back into Vault over the plugin connection.
	if sub, ok := renderEntityID(t, s.req.EntityID); ok {
		s.subject = sub
		return sub
	}
	ent, err := s.b.System().EntityInfo(s.req.EntityID)
	if err != nil || ent == nil {
		s.subjectErr = refuse("subject", "the entity of the calling token could not be read (%v); retry, or check the identity store", err)
		return ""
	}
	// Subject templates may use only the caller's own entity (no groups),
	// so group membership is never fetched.
	_, out, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{
		Mode: identitytpl.ACLTemplating, String: t, Entity: ent,
	})
	if err != nil || out == "" {
		s.subjectErr = refuse("subject", "subject_template %q does not render for this caller's entity (%v); fix the template or the entity's metadata", t, err)
		return ""
	}
	s.subject = out
	return out
}

func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

const pathSignHelpSyn = `Sign a JWT under a role.`

const pathSignHelpDesc = `
Issues a token signed by the active key of the role's ring. iss is the
configured issuer; sub comes from the role's subject_template (the caller's
entity id by default) unless the role's allowed_subjects let the caller name
one; aud is one or more of the role's audiences; iat and nbf are Vault's clock;
exp is iat + ttl; jti is random. Caller claims must be in the role's
allowed_claims.

batch_input signs up to 100 tokens in one request; each item is checked on its
own and answered in batch_results, in order, with a token or an error.
`
