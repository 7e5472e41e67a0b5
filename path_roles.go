package jwtrotor

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
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
	if r.Key != strings.ToLower(r.Key) {
		return fmt.Sprintf("key: %q has upper-case letters, and ring names are lower case (keys/<name> folds them); write key=%s", r.Key, strings.ToLower(r.Key))
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
A role is the policy of sign/<role>: the key ring, the audiences a token may
carry, the subject (from the caller's Vault entity by default), static claims,
the claims a caller may add, and token lifetimes. The claims iss, sub, aud,
exp, nbf, iat and jti are always set by the plugin and can be neither static
nor caller claims.

max_ttl + 60s must not exceed the ring's verification_ttl, so every token
expires at least a minute before its key leaves the JWKS.
`
