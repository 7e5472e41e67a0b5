package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

type keyRingResource struct{ namedResource }

var (
	_ resource.ResourceWithConfigure      = &keyRingResource{}
	_ resource.ResourceWithImportState    = &keyRingResource{}
	_ resource.ResourceWithValidateConfig = &keyRingResource{}
	_ resource.ResourceWithModifyPlan     = &keyRingResource{}
)

func newKeyRingResource() resource.Resource {
	return &keyRingResource{namedResource{resourceBase: resourceBase{typeSuffix: "_key_ring"},
		what: "Key ring", prefix: "keys/", table: keyRingFields, setMore: setRingState}}
}

const forceDestroyDesc = "On destroy, remove the ring's keys from the JWKS at once (the plugin's forced delete) instead of draining them: " +
	"tokens the ring signed stop verifying as soon as verifiers refresh, and the name is free again at once. Default false."

func (r *keyRingResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	more := ringStatusResourceAttributes()
	more["force_destroy"] = schema.BoolAttribute{
		Optional: true, Computed: true, Default: booldefault.StaticBool(false),
		Description: forceDestroyDesc,
	}
	resp.Schema = tableSchema(keyRingDoc, "The ring's name, which is also the import ID.", keyRingFields, more)
}

// ValidateConfig checks the relations between the ring's own settings; the
// ones that involve the config or roles are the plugin's to check.
func (r *keyRingResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	period, okP := keyRingFields.durationOrDefault(ctx, req.Config, "rotation_period")
	delay, okD := keyRingFields.durationOrDefault(ctx, req.Config, "max_activation_delay")
	vttl, okV := keyRingFields.durationOrDefault(ctx, req.Config, "verification_ttl")
	lead, okL := keyRingFields.durationOrDefault(ctx, req.Config, "publish_lead")
	var coverage types.Float64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("min_verifier_coverage"), &coverage)...)

	if okP && okD && delay > period {
		resp.Diagnostics.AddAttributeError(path.Root("max_activation_delay"), "Invalid value",
			fmt.Sprintf("max_activation_delay: %ds is above rotation_period (%ds); the gate may delay an activation by at most one period, so lower it", delay, period))
	}
	if okD && delay == 0 && !coverage.IsNull() && !coverage.IsUnknown() && coverage.ValueFloat64() > 0 {
		// On the attribute that is set: max_activation_delay may be absent.
		resp.Diagnostics.AddAttributeError(path.Root("min_verifier_coverage"), "Invalid value",
			"max_activation_delay: must be above 0 when min_verifier_coverage is set, or the gate could never wait; give the longest wait, such as 1h")
	}
	if okP && okV && okL && lead+vttl > 10*period {
		resp.Diagnostics.AddAttributeError(path.Root("rotation_period"), "Invalid value",
			fmt.Sprintf("rotation_period: (publish_lead %ds + verification_ttl %ds) / rotation_period %ds is above 10, which would publish too many keys at once; lengthen rotation_period to at least %ds or shorten publish_lead or verification_ttl",
				lead, vttl, period, (lead+vttl+9)/10))
	}
}

// ModifyPlan warns when a destroy will drop live keys.
func (r *keyRingResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if !req.Plan.Raw.IsNull() || req.State.Raw.IsNull() {
		return
	}
	var name types.String
	var force types.Bool
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("name"), &name)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("force_destroy"), &force)...)
	if force.ValueBool() {
		resp.Diagnostics.AddWarning("Ring "+name.ValueString()+" will be deleted with force_destroy",
			"Its keys leave the JWKS at once: tokens it signed that have not expired stop verifying as soon as verifiers refresh.")
	}
}

func (r *keyRingResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.create(ctx, req, resp, r.write)
}

func (r *keyRingResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.update(ctx, req, resp, func(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) bool {
		if len(body) == 0 {
			// Only force_destroy changed: nothing to tell Vault.
			r.readInto(ctx, name, state, diags)
			return true
		}
		return r.write(ctx, name, body, state, diags)
	})
}

// write sends body to keys/<name>; the plugin answers with the ring as a
// read shows it, which becomes the state. written is false when Vault
// refused the write.
func (r *keyRingResource) write(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) (written bool) {
	s, ok := r.c.send(ctx, "keys/"+name, body, keyRingFields, diags)
	if !ok {
		return false
	}
	if s == nil || s.Data == nil {
		r.readInto(ctx, name, state, diags)
		return true
	}
	r.setState(ctx, name, s.Data, state, diags)
	return true
}

// setRingState sets what a ring's state holds beyond its settings: its
// status, and force_destroy, which Vault does not keep, false unless set.
func setRingState(ctx context.Context, data map[string]any, state *tfsdk.State, diags *diag.Diagnostics) {
	diags.Append(setRingStatus(ctx, data, state)...)
	var force types.Bool
	diags.Append(state.GetAttribute(ctx, path.Root("force_destroy"), &force)...)
	if force.IsNull() || force.IsUnknown() {
		diags.Append(state.SetAttribute(ctx, path.Root("force_destroy"), types.BoolValue(false))...)
	}
}

func (r *keyRingResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var name types.String
	var force types.Bool
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("name"), &name)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("force_destroy"), &force)...)
	if resp.Diagnostics.HasError() {
		return
	}
	var query map[string][]string
	if force.ValueBool() {
		query = map[string][]string{"force": {"true"}}
	}
	if !r.delete(ctx, name.ValueString(), query, &resp.Diagnostics) {
		return
	}
	if force.ValueBool() {
		resp.Diagnostics.AddWarning("Ring "+name.ValueString()+" deleted with force_destroy",
			"Its keys left the JWKS at once: tokens it signed that have not expired stop verifying as soon as verifiers refresh.")
	}
}

func (r *keyRingResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	r.namedResource.ImportState(ctx, req, resp)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("force_destroy"), types.BoolValue(false))...)
}

const keyRingDoc = "A key ring (`keys/<name>`): the signing keys of one rotation schedule.\n\n" +
	"Every setting but the name changes in place: existing keys keep their timestamps and algorithm, and keys generated afterwards follow the new settings. " +
	"A new name replaces the ring.\n\n" +
	"**Destroy** drains the ring: it stops signing at once and its keys stay in the JWKS until their `remove_at`, so tokens already issued keep verifying; " +
	"the ring's name stays taken until then. To replace a ring, create one with a new name and point the roles at it, rather than destroying and recreating the same name. " +
	"Destroy fails with the plugin's message while a role still uses the ring (Terraform destroys roles that reference the ring first). " +
	"With `force_destroy = true` the keys leave the JWKS at once and tokens the ring signed stop verifying as soon as verifiers refresh."
