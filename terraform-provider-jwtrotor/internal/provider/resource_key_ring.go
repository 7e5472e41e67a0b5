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
	"github.com/hashicorp/vault/api"
)

type keyRingResource struct{ resourceBase }

var (
	_ resource.ResourceWithConfigure      = &keyRingResource{}
	_ resource.ResourceWithImportState    = &keyRingResource{}
	_ resource.ResourceWithValidateConfig = &keyRingResource{}
	_ resource.ResourceWithModifyPlan     = &keyRingResource{}
)

func newKeyRingResource() resource.Resource {
	return &keyRingResource{resourceBase{typeSuffix: "_key_ring"}}
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
	createNamed(ctx, r.c, "Key ring", "keys/", keyRingFields, req, resp, r.write)
}

func (r *keyRingResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var name types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("name"), &name)...)
	body, d := keyRingFields.writeBody(ctx, req.Config, req.Plan, req.State, "name")
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.State.Raw = req.Plan.Raw
	if len(body) == 0 {
		// Only force_destroy changed: nothing to tell Vault.
		r.readInto(ctx, name.ValueString(), &resp.State, &resp.Diagnostics)
		return
	}
	if !r.write(ctx, name.ValueString(), body, &resp.State, &resp.Diagnostics) {
		resp.State.Raw = req.State.Raw // refused: nothing changed
	}
}

// write sends body to keys/<name>; the plugin answers with the ring as a
// read shows it, which becomes the state. written is false when Vault
// refused the write.
func (r *keyRingResource) write(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) (written bool) {
	rel := "keys/" + name
	s, err := r.c.write(ctx, rel, body)
	if err != nil {
		addVaultError(diags, "Vault refused the write to "+r.c.p(rel), err, keyRingFields.names())
		return
	}
	addWarnings(diags, "Warning from "+r.c.p(rel), s)
	if s == nil || s.Data == nil {
		r.readInto(ctx, name, state, diags)
		return true
	}
	r.setState(ctx, name, s, state, diags)
	return true
}

func (r *keyRingResource) readInto(ctx context.Context, name string, state *tfsdk.State, diags *diag.Diagnostics) bool {
	rel := "keys/" + name
	s, err := r.c.read(ctx, rel)
	if err != nil {
		addVaultError(diags, "Reading "+r.c.p(rel), err, nil)
		return false
	}
	if s == nil {
		return false
	}
	r.setState(ctx, name, s, state, diags)
	return true
}

func (r *keyRingResource) setState(ctx context.Context, name string, s *api.Secret, state *tfsdk.State, diags *diag.Diagnostics) {
	diags.Append(state.SetAttribute(ctx, path.Root("id"), types.StringValue(name))...)
	diags.Append(state.SetAttribute(ctx, path.Root("name"), types.StringValue(name))...)
	diags.Append(keyRingFields.setFromAPI(ctx, s.Data, state)...)
	diags.Append(setRingStatus(ctx, s.Data, state)...)
	var force types.Bool
	diags.Append(state.GetAttribute(ctx, path.Root("force_destroy"), &force)...)
	if force.IsNull() || force.IsUnknown() {
		diags.Append(state.SetAttribute(ctx, path.Root("force_destroy"), types.BoolValue(false))...)
	}
}

func (r *keyRingResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var name types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("name"), &name)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !r.readInto(ctx, name.ValueString(), &resp.State, &resp.Diagnostics) && !resp.Diagnostics.HasError() {
		// Deleted (or drained) outside Terraform: the next plan creates it.
		resp.State.RemoveResource(ctx)
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
	rel := "keys/" + name.ValueString()
	var query map[string][]string
	if force.ValueBool() {
		query = map[string][]string{"force": {"true"}}
	}
	s, err := r.c.delete(ctx, rel, query)
	if err != nil {
		addVaultError(&resp.Diagnostics, "Vault refused to delete "+r.c.p(rel), err, nil)
		return
	}
	addWarnings(&resp.Diagnostics, "Warning from "+r.c.p(rel), s)
	if force.ValueBool() {
		resp.Diagnostics.AddWarning("Ring "+name.ValueString()+" deleted with force_destroy",
			"Its keys left the JWKS at once: tokens it signed that have not expired stop verifying as soon as verifiers refresh.")
	}
}

func (r *keyRingResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), types.StringValue(req.ID))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), types.StringValue(req.ID))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("force_destroy"), types.BoolValue(false))...)
}

const keyRingDoc = "A key ring (`keys/<name>`): the signing keys of one rotation schedule.\n\n" +
	"Every setting but the name changes in place: existing keys keep their timestamps and algorithm, and keys generated afterwards follow the new settings. " +
	"A new name replaces the ring.\n\n" +
	"**Destroy** drains the ring: it stops signing at once and its keys stay in the JWKS until their `remove_at`, so tokens already issued keep verifying; " +
	"the ring's name stays taken until then. To replace a ring, create one with a new name and point the roles at it, rather than destroying and recreating the same name. " +
	"Destroy fails with the plugin's message while a role still uses the ring (Terraform destroys roles that reference the ring first). " +
	"With `force_destroy = true` the keys leave the JWKS at once and tokens the ring signed stop verifying as soon as verifiers refresh."
