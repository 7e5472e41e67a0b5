package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/identitytpl"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	defaultRoleTTL         = int64(15 * 60)
	defaultRoleMaxTTL      = int64(3600)
	defaultSubjectTemplate = "{{identity.entity.id}}"
	maxClaimNameLen        = 256
	maxAudiences           = 32
	maxAudienceLen         = 512
	maxSubjectLen          = 1024
	maxTemplateLen         = 1024
)

// reservedClaims are set by the plugin from Vault's clock, the role and the
// config; neither a role nor a caller may set them.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

func isReserved(name string) bool {
	for _, r := range reservedClaims {
		if strings.EqualFold(r, name) {
			return true
		}
	}
	return false
}

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		{
			Pattern: "roles/?$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "roles",
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: &framework.PathOperation{Callback: b.pathRolesList},
			},
			HelpSynopsis:    "List roles.",
			HelpDescription: "Lists the names of the roles of this mount.",
		},
		{
			Pattern: "roles/" + framework.GenericNameRegex("name") + "$",
			DisplayAttrs: &framework.DisplayAttributes{
				OperationPrefix: operationPrefix,
				OperationSuffix: "role",
			},
			Fields: map[string]*framework.FieldSchema{
				"name": {Type: framework.TypeLowerCaseString, Description: "Name of the role.", Required: true},
				"key": {
					Type:        framework.TypeString,
					Description: "Key ring that signs this role's tokens.",
				},
				"audiences": {
					Type:        framework.TypeCommaStringSlice,
					Description: "Audiences a token may carry (matched exactly). Required. A sign request picks one or more; by default it gets all.",
				},
				"ttl": {
					Type:        framework.TypeDurationSecond,
					Default:     defaultRoleTTL,
					Description: "Token lifetime when the sign request gives none.",
				},
				"max_ttl": {
					Type:        framework.TypeDurationSecond,
					Default:     defaultRoleMaxTTL,
					Description: "Longest token lifetime a sign request may ask for. max_ttl + 60s must not exceed the ring's verification_ttl.",
				},
				"subject_template": {
					Type:        framework.TypeString,
					Default:     defaultSubjectTemplate,
					Description: "Template of the sub claim, in Vault identity templating ({{identity.entity.id}}, {{identity.entity.name}}, {{identity.entity.metadata.<key>}}, {{identity.entity.aliases.<mount accessor>.name}}), or a static string.",
				},
				"allowed_subjects": {
					Type:        framework.TypeCommaStringSlice,
					Description: "Subjects a caller may name with subject=; '*' may appear once, at the start or the end. Empty: callers may not choose.",
				},
				"claims": {
					Type:        framework.TypeMap,
					Description: "Static claims added to every token. A caller claim of the same name is refused.",
				},
				"allowed_claims": {
					Type:        framework.TypeCommaStringSlice,
					Description: "Names of claims a caller may set in a sign request.",
				},
				"token_type": {
					Type:        framework.TypeString,
					Default:     "JWT",
					Description: "typ header of the tokens: JWT or at+jwt.",
				},
				"allow_token_read": {
					Type:        framework.TypeBool,
					Default:     false,
					Description: "Whether a read of token/<role> mints a token with the role's defaults (as sign/<role> with no fields does). Off by default: with it on, read capability on token/<role> means may mint.",
				},
			},
			ExistenceCheck:  b.roleExists,
			Operations:      crudOperations(b.pathRoleRead, b.pathRoleWrite, b.pathRoleDelete),
			HelpSynopsis:    pathRolesHelpSyn,
			HelpDescription: pathRolesHelpDesc,
		},
	}
}

func (b *backend) roleExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return false, err
	}
	return snap.roles[d.Get("name").(string)] != nil, nil
}

func (b *backend) pathRolesList(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return logical.ListResponse(sortedNames(snap.roles)), nil
}

func roleData(r *roleEntry) map[string]any {
	claims := r.Claims
	if claims == nil {
		claims = map[string]any{}
	}
	return map[string]any{
		"key":              r.Key,
		"audiences":        r.Audiences,
		"ttl":              r.TTL,
		"max_ttl":          r.MaxTTL,
		"subject_template": r.SubjectTemplate,
		"allowed_subjects": r.AllowedSubjects,
		"claims":           claims,
		"allowed_claims":   r.AllowedClaims,
		"token_type":       r.TokenType,
		"allow_token_read": r.AllowTokenRead,
	}
}

func (b *backend) pathRoleRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	r := snap.roles[d.Get("name").(string)]
	if r == nil {
		return nil, nil
	}
	return &logical.Response{Data: roleData(r)}, nil
}

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	r := &roleEntry{
		TTL: defaultRoleTTL, MaxTTL: defaultRoleMaxTTL, SubjectTemplate: defaultSubjectTemplate,
		TokenType: "JWT", Audiences: []string{}, AllowedSubjects: []string{}, AllowedClaims: []string{},
		Claims: map[string]any{},
	}
	if old := snap.roles[name]; old != nil {
		c := *old
		r = &c
	}
	r.Version = schemaVersion
	if v, ok := d.GetOk("key"); ok {
		r.Key = v.(string)
	}
	if v, ok := d.GetOk("audiences"); ok {
		r.Audiences = v.([]string)
	}
	if v, ok := d.GetOk("ttl"); ok {
		r.TTL = int64(v.(int))
	}
	if v, ok := d.GetOk("max_ttl"); ok {
		r.MaxTTL = int64(v.(int))
	}
	if v, ok := d.GetOk("subject_template"); ok {
		r.SubjectTemplate = v.(string)
	}
	if v, ok := d.GetOk("allowed_subjects"); ok {
		r.AllowedSubjects = v.([]string)
	}
	if v, ok := d.GetOk("claims"); ok {
		r.Claims = v.(map[string]any)
	}
	if v, ok := d.GetOk("allowed_claims"); ok {
		r.AllowedClaims = v.([]string)
	}
	if v, ok := d.GetOk("token_type"); ok {
		r.TokenType = v.(string)
	}
	if v, ok := d.GetOk("allow_token_read"); ok {
		r.AllowTokenRead = v.(bool)
	}
	if msg := checkRole(snap, r); msg != "" {
		return logical.ErrorResponse(msg), logical.ErrInvalidRequest
	}
	if err := putJSON(ctx, req.Storage, rolePrefix+name, r); err != nil {
		return nil, err
	}
	b.cacheRole(name, r)
	return nil, nil
}

// checkRole validates a role on its own and against its ring.
func checkRole(snap *snapshot, r *roleEntry) string {
	if r.Key == "" {
		return "key: required; name the key ring that signs this role's tokens (vault list keys/)"
	}
	ring := snap.rings[r.Key]
	if ring == nil || ring.DeletedAt != 0 {
		return fmt.Sprintf("key: no key ring %q; create it first with vault write keys/%s", r.Key, r.Key)
	}
	if len(r.Audiences) == 0 {
		return "audiences: required; list the audiences this role's tokens are for, such as audiences=https://api.example.com"
	}
	if len(r.Audiences) > maxAudiences {
		return fmt.Sprintf("audiences: %d audiences is above the limit of %d; a token names few audiences, so split the role", len(r.Audiences), maxAudiences)
	}
	for _, a := range r.Audiences {
		if len(a) > maxAudienceLen {
			return fmt.Sprintf("audiences: an audience of %d bytes is longer than the %d-byte limit", len(a), maxAudienceLen)
		}
		if strings.TrimSpace(a) == "" || a != strings.TrimSpace(a) {
			return fmt.Sprintf("audiences: %q is empty or has surrounding spaces; audiences are matched exactly, so give each without spaces", a)
		}
	}
	if r.TTL < 1 {
		return "ttl: must be at least 1s; give a token lifetime such as 15m"
	}
	if r.MaxTTL < 1 {
		return "max_ttl: must be at least 1s; give the longest token lifetime, such as 1h"
	}
	if r.TTL > r.MaxTTL {
		return fmt.Sprintf("ttl: %ds is above max_ttl (%ds); lower ttl or raise max_ttl", r.TTL, r.MaxTTL)
	}
	if r.MaxTTL+clockSkew > ring.VerificationTTL {
		return fmt.Sprintf("max_ttl: %ds plus 60s of clock skew is above ring %q verification_ttl (%ds), so a token could outlive its key in the JWKS; lower max_ttl to at most %ds, or raise the ring's verification_ttl first",
			r.MaxTTL, r.Key, ring.VerificationTTL, ring.VerificationTTL-clockSkew)
	}
	if msg := checkSubjectTemplate(r.SubjectTemplate); msg != "" {
		return msg
	}
	for _, g := range r.AllowedSubjects {
		if msg := checkGlob(g); msg != "" {
			return msg
		}
	}
	if msg := checkClaimsObject("claims", r.Claims); msg != "" {
		return msg
	}
	for name := range r.Claims {
		if isReserved(name) {
			return fmt.Sprintf("claims: %q is reserved (%s are set by the plugin); remove it (use audiences and subject_template for aud and sub)", name, strings.Join(reservedClaims, " "))
		}
	}
	for _, name := range r.AllowedClaims {
		if msg := checkClaimName("allowed_claims", name); msg != "" {
			return msg
		}
		if isReserved(name) {
			return fmt.Sprintf("allowed_claims: %q is reserved (%s are set by the plugin); remove it", name, strings.Join(reservedClaims, " "))
		}
		if _, ok := staticClaimNamed(r.Claims, name); ok {
			return fmt.Sprintf("allowed_claims: %q is also a static claim of this role, so a caller could never set it; remove it from one of the two", name)
		}
	}
	if r.TokenType != "JWT" && r.TokenType != "at+jwt" {
		return fmt.Sprintf("token_type: %q is not supported; use JWT or at+jwt", r.TokenType)
	}
	return ""
}

// checkSubjectTemplate accepts a static subject or a Vault identity template
// that renders in ACL mode (no JSON, no nested braces).
func checkSubjectTemplate(t string) string {
	if t == "" {
		return "subject_template: empty; use {{identity.entity.id}} (the default) or a static subject"
	}
	if len(t) > maxTemplateLen || !utf8.ValidString(t) {
		return fmt.Sprintf("subject_template: must be valid UTF-8 of at most %d bytes", maxTemplateLen)
	}
	if !strings.Contains(t, "{{") && !strings.Contains(t, "}}") {
		return ""
	}
	_, _, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{
		Mode: identitytpl.ACLTemplating, String: t, ValidityCheckOnly: true,
	})
	if err != nil {
		return fmt.Sprintf("subject_template: %v; use Vault identity templating such as {{identity.entity.id}} or {{identity.entity.name}}", err)
	}
	for _, d := range templateDirectives(t) {
		if !subjectDirective.MatchString(d) {
			return fmt.Sprintf("subject_template: {{%s}} is not an entity directive; use identity.entity.id, identity.entity.name, identity.entity.metadata.<key> or identity.entity.aliases.<mount accessor>.(id|name|metadata.<key>)", d)
		}
	}
	return ""
}

// templateDirectives returns the trimmed directives of a template, in order.
func templateDirectives(t string) []string {
	var out []string
	for _, piece := range strings.Split(t, "{{")[1:] {
		out = append(out, strings.TrimSpace(strings.SplitN(piece, "}}", 2)[0]))
	}
	return out
}

// renderEntityID renders a template whose only directive is the entity id,
// which the request carries; ok is false if it uses anything else.
func renderEntityID(t, entityID string) (string, bool) {
	for _, d := range templateDirectives(t) {
		if d != "identity.entity.id" {
			return "", false
		}
	}
	pieces := strings.Split(t, "{{")
	var b strings.Builder
	b.WriteString(pieces[0])
	for _, p := range pieces[1:] {
		b.WriteString(entityID)
		b.WriteString(strings.SplitN(p, "}}", 2)[1])
	}
	return b.String(), true
}

// subjectDirective is the part of Vault identity templating a subject may
// use: values of the caller's own entity.
var subjectDirective = regexp.MustCompile(`^identity\.entity\.(id|name|metadata\.[^.{}\s]+|aliases\.[^.{}\s]+\.(id|name|metadata\.[^.{}\s]+|custom_metadata\.[^.{}\s]+))$`)

func checkGlob(g string) string {
	if g == "" || !utf8.ValidString(g) {
		return "allowed_subjects: an entry is empty or not UTF-8; give subjects such as spiffe://example.org/* "
	}
	n := strings.Count(g, "*")
	if n == 0 || g == "*" {
		return ""
	}
	if n > 1 || !(strings.HasPrefix(g, "*") || strings.HasSuffix(g, "*")) {
		return fmt.Sprintf("allowed_subjects: %q may use '*' once, only at the start or the end (such as svc-* or *@example.com)", g)
	}
	return ""
}

func globMatch(g, s string) bool {
	switch {
	case g == "*":
		return true
	case strings.HasSuffix(g, "*"):
		return strings.HasPrefix(s, strings.TrimSuffix(g, "*"))
	case strings.HasPrefix(g, "*"):
		return strings.HasSuffix(s, strings.TrimPrefix(g, "*"))
	}
	return g == s
}

// Limits on claims, so a token stays small enough for HTTP headers and a
// hostile request cannot make the plugin build a huge one.
const (
	maxClaims      = 64
	maxClaimsBytes = 8 * 1024
	maxClaimsDepth = 5
)

func checkClaimName(field, name string) string {
	if name == "" || len(name) > maxClaimNameLen || !utf8.ValidString(name) {
		return fmt.Sprintf("%s: claim names must be 1 to %d bytes of UTF-8", field, maxClaimNameLen)
	}
	return ""
}

func checkClaimsObject(field string, m map[string]any) string {
	if len(m) > maxClaims {
		return fmt.Sprintf("%s: %d claims is above the limit of %d; send fewer", field, len(m), maxClaims)
	}
	names := make([]string, 0, len(m))
	for name, v := range m {
		if msg := checkClaimName(field, name); msg != "" {
			return msg
		}
		// EqualFold, not ToLower: it folds as Go's encoding/json matches
		// field names (s and U+017F, k and the Kelvin sign), so a verifier
		// can never be made to read one claim for another.
		for _, other := range names {
			if strings.EqualFold(other, name) {
				return fmt.Sprintf("%s: %q and %q differ only in case; verifiers may read either, so keep one", field, other, name)
			}
		}
		names = append(names, name)
		if depth(v) > maxClaimsDepth {
			return fmt.Sprintf("%s: %q nests deeper than %d levels; flatten it", field, name, maxClaimsDepth)
		}
		if msg := checkClaimValue(field, name, v); msg != "" {
			return msg
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Sprintf("%s: not encodable as JSON: %v", field, err)
	}
	if len(b) > maxClaimsBytes {
		return fmt.Sprintf("%s: %d bytes of JSON is above the limit of %d; send less", field, len(b), maxClaimsBytes)
	}
	return ""
}

// checkClaimValue refuses text that is not UTF-8 and numbers no verifier
// can decode (beyond float64).
func checkClaimValue(field, name string, v any) string {
	switch t := v.(type) {
	case string:
		if !utf8.ValidString(t) {
			return fmt.Sprintf("%s: %q has a value that is not valid UTF-8; send text", field, name)
		}
	case json.Number:
		if f, err := t.Float64(); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Sprintf("%s: %q has the number %s, beyond what verifiers can decode; send a smaller number or a string", field, name, t.String())
		}
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			return fmt.Sprintf("%s: %q is not a finite number", field, name)
		}
	case map[string]any:
		for k, e := range t {
			if !utf8.ValidString(k) {
				return fmt.Sprintf("%s: %q has a member name that is not valid UTF-8", field, name)
			}
			if msg := checkClaimValue(field, name, e); msg != "" {
				return msg
			}
		}
	case []any:
		for _, e := range t {
			if msg := checkClaimValue(field, name, e); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func depth(v any) int {
	switch t := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range t {
			if x := depth(e); x > d {
				d = x
			}
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range t {
			if x := depth(e); x > d {
				d = x
			}
		}
		return d + 1
	}
	return 0
}

func (b *backend) pathRoleDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	if err := req.Storage.Delete(ctx, rolePrefix+name); err != nil {
		return nil, fmt.Errorf("delete role %q: %w", name, err)
	}
	b.cacheRole(name, nil)
	return nil, nil
}

const pathRolesHelpSyn = `Manage a role: which ring signs, for whom, with which claims.`

const pathRolesHelpDesc = `
A role is the policy of sign/<role> (and of token/<role> when
allow_token_read is true): the key ring, the audiences a token may carry, the
subject (from the caller's Vault entity by default), static claims, the claims
a caller may add, and token lifetimes. The claims iss, sub, aud,
exp, nbf, iat and jti are always set by the plugin and can be neither static
nor caller claims.

max_ttl + 60s must not exceed the ring's verification_ttl, so every token
expires at least a minute before its key leaves the JWKS.

allow_token_read (default false) lets a read of token/<role> mint a token
with the role's defaults, for Vault Agent templates and other readers. With it
on, a policy granting read on token/<role> (or on a wildcard that covers it)
lets its holder mint.
`
