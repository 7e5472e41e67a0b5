package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	defaultRoleTTLSeconds    = int64(15 * 60)
	defaultRoleMaxTTLSeconds = int64(3600)
	defaultSubjectTemplate   = "{{identity.entity.id}}"
	maxClaimNameLen          = 256
	maxAudiences             = 32
	maxAudienceLen           = 512
	maxSubjectLen            = 1024
	maxTemplateLen           = 1024
)

func pathRoles(b *backend) []*framework.Path {
	return []*framework.Path{
		b.listPath("roles", "roles", "Role names.", func(snap *snapshot) []string { return slices.Sorted(maps.Keys(snap.roles)) }),
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
					Default:     durationDefault(defaultRoleTTLSeconds),
					Description: "Token lifetime when the sign request gives none.",
				},
				"max_ttl": {
					Type:        framework.TypeDurationSecond,
					Default:     durationDefault(defaultRoleMaxTTLSeconds),
					Description: fmt.Sprintf("Longest token lifetime a sign request may ask for. max_ttl + %ds must not exceed the ring's verification_ttl.", clockSkewSeconds),
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
			ExistenceCheck: objectExists(b, rolesOf),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation:   op(objectRead(b, rolesOf, roleData), "read", "role", "Read a role.", roleAnswer),
				logical.CreateOperation: writeOp(b.pathRoleWrite, "write", "role", "Create a role, or change it.", nil),
				logical.UpdateOperation: writeOp(b.pathRoleWrite, "write", "role", "Create a role, or change it.", nil),
				logical.DeleteOperation: writeOp(b.pathRoleDelete, "delete", "role", "Delete a role.", nil),
			},
			HelpSynopsis:    pathRolesHelpSyn,
			HelpDescription: pathRolesHelpDesc,
		},
	}
}

// roleAnswer is what a role read answers: exactly the fields writes accept.
var roleAnswer = map[string]*framework.FieldSchema{
	"key":              {Type: framework.TypeString, Description: "Key ring that signs this role's tokens.", Required: true},
	"audiences":        {Type: framework.TypeCommaStringSlice, Description: "Audiences a token may carry.", Required: true},
	"ttl":              {Type: framework.TypeDurationSecond, Description: "Default token lifetime (seconds).", Required: true},
	"max_ttl":          {Type: framework.TypeDurationSecond, Description: "Longest token lifetime (seconds).", Required: true},
	"subject_template": {Type: framework.TypeString, Description: "Template of the sub claim.", Required: true},
	"allowed_subjects": {Type: framework.TypeCommaStringSlice, Description: "Subjects a caller may name.", Required: true},
	"claims":           {Type: framework.TypeMap, Description: "Static claims.", Required: true},
	"allowed_claims":   {Type: framework.TypeCommaStringSlice, Description: "Claims a caller may set.", Required: true},
	"token_type":       {Type: framework.TypeString, Description: "typ header: JWT or at+jwt.", Required: true},
	"allow_token_read": {Type: framework.TypeBool, Description: "Whether a read of token/<role> mints.", Required: true},
}

func rolesOf(snap *snapshot) map[string]*roleEntry { return snap.roles }

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

func (b *backend) pathRoleWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	r := &roleEntry{
		TTL: defaultRoleTTLSeconds, MaxTTL: defaultRoleMaxTTLSeconds, SubjectTemplate: defaultSubjectTemplate,
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
	if err := checkRole(snap, r); err != nil {
		return respond(err)
	}
	if err := putJSON(ctx, req.Storage, rolePrefix+name, r); err != nil {
		return nil, err
	}
	b.cacheRole(name, r)
	return nil, nil
}

// checkRole validates a role on its own and against its ring.
func checkRole(snap *snapshot, r *roleEntry) error {
	if r.Key == "" {
		return refuse("key", "required; name the key ring that signs this role's tokens (vault list keys/)")
	}
	if r.Key != strings.ToLower(r.Key) {
		return refuse("key", "%q has upper-case letters, and ring names are lower case (keys/<name> folds them); write key=%s", r.Key, strings.ToLower(r.Key))
	}
	ring := snap.rings[r.Key]
	if ring == nil || ring.DeletedAt != 0 {
		return refuse("key", "no key ring %q; create it first with vault write keys/%s", r.Key, r.Key)
	}
	if len(r.Audiences) == 0 {
		return refuse("audiences", "required; list the audiences this role's tokens are for, such as audiences=https://api.example.com")
	}
	if len(r.Audiences) > maxAudiences {
		return refuse("audiences", "%d audiences is above the limit of %d; a token names few audiences, so split the role", len(r.Audiences), maxAudiences)
	}
	for _, a := range r.Audiences {
		if len(a) > maxAudienceLen {
			return refuse("audiences", "an audience of %d bytes is longer than the %d-byte limit", len(a), maxAudienceLen)
		}
		if strings.TrimSpace(a) == "" || a != strings.TrimSpace(a) {
			return refuse("audiences", "%q is empty or has surrounding spaces; audiences are matched exactly, so give each without spaces", a)
		}
	}
	if r.TTL < 1 {
		return refuse("ttl", "must be at least 1s; give a token lifetime such as 15m")
	}
	if r.MaxTTL < 1 {
		return refuse("max_ttl", "must be at least 1s; give the longest token lifetime, such as 1h")
	}
	if r.TTL > r.MaxTTL {
		return refuse("ttl", "%ds is above max_ttl (%ds); lower ttl or raise max_ttl", r.TTL, r.MaxTTL)
	}
	if r.MaxTTL+clockSkewSeconds > ring.VerificationTTL {
		return refuse("max_ttl", "%ds plus %ds of clock skew is above ring %q verification_ttl (%ds), so a token could outlive its key in the JWKS; lower max_ttl to at most %ds, or raise the ring's verification_ttl first",
			r.MaxTTL, clockSkewSeconds, r.Key, ring.VerificationTTL, ring.VerificationTTL-clockSkewSeconds)
	}
	if err := checkSubjectTemplate(r.SubjectTemplate); err != nil {
		return err
	}
	for _, g := range r.AllowedSubjects {
		if err := checkGlob(g); err != nil {
			return err
		}
	}
	if err := checkClaimsObject("claims", r.Claims); err != nil {
		return err
	}
	for name := range r.Claims {
		if isReserved(name) {
			return refuse("claims", "%q is reserved (%s are set by the plugin); remove it (use audiences and subject_template for aud and sub)", name, strings.Join(reservedClaims, " "))
		}
	}
	for _, name := range r.AllowedClaims {
		if err := checkClaimName("allowed_claims", name); err != nil {
			return err
		}
		if isReserved(name) {
			return refuse("allowed_claims", "%q is reserved (%s are set by the plugin); remove it", name, strings.Join(reservedClaims, " "))
		}
		if _, ok := staticClaimNamed(r.Claims, name); ok {
			return refuse("allowed_claims", "%q is also a static claim of this role, so a caller could never set it; remove it from one of the two", name)
		}
	}
	if r.TokenType != "JWT" && r.TokenType != "at+jwt" {
		return refuse("token_type", "%q is not supported; use JWT or at+jwt", r.TokenType)
	}
	return nil
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

var pathRolesHelpDesc = fmt.Sprintf(`
A role is the policy of sign/<role> (and of token/<role> when
allow_token_read is true): the key ring, the audiences a token may carry, the
subject (from the caller's Vault entity by default), static claims, the claims
a caller may add, and token lifetimes. The claims iss, sub, aud,
exp, nbf, iat and jti are always set by the plugin and can be neither static
nor caller claims.

max_ttl + %ds must not exceed the ring's verification_ttl, so every token
expires at least a minute before its key leaves the JWKS.

allow_token_read (default false) lets a read of token/<role> mint a token
with the role's defaults, for Vault Agent templates and other readers. With it
on, a policy granting read on token/<role> (or on a wildcard that covers it)
lets its holder mint.
`, clockSkewSeconds)
