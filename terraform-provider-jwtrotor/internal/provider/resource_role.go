package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// roleFields are the fields of roles/<name> (path_roles.go), one entry per
// field of the plugin's write; a new role field is one more entry here.
var roleFields = fields{
	{name: "name", kind: kString, required: true, replace: true,
		desc: "Name of the role.", strV: []validator.String{nameCheck("name")}},
	{name: "key", kind: kString, required: true,
		desc: "Key ring that signs this role's tokens.", strV: []validator.String{nameCheck("key")}},
	{name: "audiences", kind: kStrings, required: true,
		desc:  "Audiences a token may carry (matched exactly). Required. A sign request picks one or more; by default it gets all.",
		listV: []validator.List{listCheck{name: "audiences", min: 1, max: 32, item: checkAudience}}},
	{name: "ttl", kind: kDuration, def: "15m",
		desc: "Token lifetime when the sign request gives none.",
		strV: []validator.String{durationBetween("ttl", 1, -1, "give a token lifetime such as 15m")}},
	{name: "max_ttl", kind: kDuration, def: "1h",
		desc: "Longest token lifetime a sign request may ask for. max_ttl + 60s must not exceed the ring's verification_ttl.",
		strV: []validator.String{durationBetween("max_ttl", 1, -1, "give the longest token lifetime, such as 1h")}},
	{name: "subject_template", kind: kString, def: "{{identity.entity.id}}",
		desc: "Template of the sub claim, in Vault identity templating ({{identity.entity.id}}, {{identity.entity.name}}, {{identity.entity.metadata.<key>}}, {{identity.entity.aliases.<mount accessor>.name}}), or a static string."},
	{name: "allowed_subjects", kind: kStrings, def: []string{},
		desc:  "Subjects a caller may name with subject=; '*' may appear once, at the start or the end. Empty: callers may not choose.",
		listV: []validator.List{listCheck{name: "allowed_subjects", item: checkSubjectGlob}}},
	{name: "claims", kind: kJSON, def: "{}",
		desc: "Static claims added to every token. A caller claim of the same name is refused."},
	{name: "allowed_claims", kind: kStrings, def: []string{},
		desc:  "Names of claims a caller may set in a sign request.",
		listV: []validator.List{listCheck{name: "allowed_claims", unique: true}}},
	{name: "token_type", kind: kString, def: "JWT",
		desc: "typ header of the tokens: JWT or at+jwt.",
		strV: []validator.String{oneOf("token_type", "JWT", "at+jwt")}},
	{name: "allow_token_read", kind: kBool, def: false,
		desc: "Whether a read of token/<role> mints a token with the role's defaults (as sign/<role> with no fields does). Off by default: with it on, read capability on token/<role> means may mint."},
}

// reservedClaims are set by the plugin; neither a role nor a caller may.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

type roleResource struct{ namedResource }

var (
	_ resource.ResourceWithConfigure      = &roleResource{}
	_ resource.ResourceWithImportState    = &roleResource{}
	_ resource.ResourceWithValidateConfig = &roleResource{}
)

func newRoleResource() resource.Resource {
	return &roleResource{namedResource{resourceBase: resourceBase{typeSuffix: "_role"},
		what: "Role", prefix: "roles/", table: roleFields}}
}

func (r *roleResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = tableSchema(roleDoc, "The role's name, which is also the import ID.", roleFields, nil)
}

func (r *roleResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	ttl, okT := roleFields.durationOrDefault(ctx, req.Config, "ttl")
	maxTTL, okM := roleFields.durationOrDefault(ctx, req.Config, "max_ttl")
	if okT && okM && ttl > maxTTL {
		resp.Diagnostics.AddAttributeError(path.Root("ttl"), "Invalid value",
			fmt.Sprintf("ttl: %ds is above max_ttl (%ds); lower ttl or raise max_ttl", ttl, maxTTL))
	}

	var claims JSONObject
	var allowed types.List
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("claims"), &claims)...)
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("allowed_claims"), &allowed)...)
	static := map[string]bool{}
	if !claims.IsNull() && !claims.IsUnknown() {
		if m, err := claims.Object(); err == nil {
			for name := range m {
				static[strings.ToLower(name)] = true
				if isReservedClaim(name) {
					resp.Diagnostics.AddAttributeError(path.Root("claims"), "Invalid value",
						fmt.Sprintf("claims: %q is reserved (%s are set by the plugin); remove it (use audiences and subject_template for aud and sub)", name, strings.Join(reservedClaims, " ")))
				}
			}
		}
	}
	if !allowed.IsNull() && !allowed.IsUnknown() {
		for i, e := range allowed.Elements() {
			s, ok := e.(types.String)
			if !ok || s.IsNull() || s.IsUnknown() {
				continue
			}
			name := s.ValueString()
			if isReservedClaim(name) {
				resp.Diagnostics.AddAttributeError(path.Root("allowed_claims").AtListIndex(i), "Invalid value",
					fmt.Sprintf("allowed_claims: %q is reserved (%s are set by the plugin); remove it", name, strings.Join(reservedClaims, " ")))
			} else if static[strings.ToLower(name)] {
				resp.Diagnostics.AddAttributeError(path.Root("allowed_claims").AtListIndex(i), "Invalid value",
					fmt.Sprintf("allowed_claims: %q is also a static claim of this role, so a caller could never set it; remove it from one of the two", name))
			}
		}
	}
}

// ReservedClaims is a copy of the claims the plugin sets itself, which a
// role may not: the provider refuses them at plan time. The plugin serves
// its own list as the discovery document's claims_supported; an acceptance
// test holds this copy to it.
func ReservedClaims() []string { return append([]string(nil), reservedClaims...) }

func isReservedClaim(name string) bool {
	for _, r := range reservedClaims {
		if strings.EqualFold(r, name) {
			return true
		}
	}
	return false
}

func (r *roleResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.create(ctx, req, resp, r.write)
}

func (r *roleResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.update(ctx, req, resp, r.write)
}

// write sends body (if any) and reads the role back into state; written is
// false when Vault refused the write.
func (r *roleResource) write(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) (written bool) {
	rel := "roles/" + name
	if len(body) > 0 {
		if _, ok := r.c.send(ctx, rel, body, roleFields, diags); !ok {
			return false
		}
	}
	if !r.readInto(ctx, name, state, diags) && !diags.HasError() {
		diags.AddError("Reading "+r.c.p(rel), "The role is gone right after its write.")
	}
	return true
}

const roleDoc = "A role (`roles/<name>`): the policy of `sign/<name>`, which ring signs, for which audiences and subjects, with which claims and lifetimes.\n\n" +
	"Every attribute but the name changes in place; an attribute left out of the configuration is the plugin's default, so removing one from the configuration returns it to the default. " +
	"A new name replaces the role.\n\n" +
	"**Destroy** deletes the role: signing under it stops at once."
