package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/boolplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/vault/api"
)

// rotationFields are the fields of keys/<name>/rotate (path_keys_ops.go)
// that the resource sends, with the plugin's descriptions.
var rotationFieldDescs = map[string]string{
	"force":               "Promote the pending key now even if it has been published for less than publish_lead (the response warns).",
	"revoke_active":       "Revoke the outgoing key (out of the JWKS at once) instead of retiring it. Implies force.",
	"expected_active_kid": "Do nothing unless this is the active kid, so retries and re-applies are safe.",
}

type rotationResource struct{ resourceBase }

var _ resource.ResourceWithConfigure = &rotationResource{}

func newRotationResource() resource.Resource {
	return &rotationResource{resourceBase{typeSuffix: "_rotation"}}
}

type rotationModel struct {
	ID                types.String `tfsdk:"id"`
	Ring              types.String `tfsdk:"ring"`
	Triggers          types.Map    `tfsdk:"triggers"`
	Force             types.Bool   `tfsdk:"force"`
	RevokeActive      types.Bool   `tfsdk:"revoke_active"`
	ExpectedActiveKID types.String `tfsdk:"expected_active_kid"`
	Rotated           types.Bool   `tfsdk:"rotated"`
	PreviousKID       types.String `tfsdk:"previous_kid"`
	PromotedKID       types.String `tfsdk:"promoted_kid"`
	ActivatesAt       types.Int64  `tfsdk:"activates_at"`
}

func (r *rotationResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	keep := []planmodifier.String{stringplanmodifier.UseStateForUnknown()}
	d := rotationFieldDescs
	resp.Schema = schema.Schema{
		Description:         rotationDoc,
		MarkdownDescription: rotationDoc,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, PlanModifiers: keep,
				Description: "<ring>/<Unix seconds of the rotation>."},
			"ring": schema.StringAttribute{Required: true,
				Description:   "Name of the key ring to rotate.",
				Validators:    []validator.String{nameCheck("ring")},
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()}},
			"triggers": schema.MapAttribute{Optional: true, ElementType: types.StringType,
				Description:   "Arbitrary values; a change to any of them is a new rotation (like the keepers of time_rotating or random_id).",
				PlanModifiers: []planmodifier.Map{mapplanmodifier.RequiresReplace()}},
			"force": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description:   d["force"] + " Default false: the pending key signs once it has been published for publish_lead.",
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()}},
			"revoke_active": schema.BoolAttribute{Optional: true, Computed: true, Default: booldefault.StaticBool(false),
				Description:   d["revoke_active"] + " Tokens the outgoing key signed stop verifying once verifiers refresh. Default false.",
				PlanModifiers: []planmodifier.Bool{boolplanmodifier.RequiresReplace()}},
			"expected_active_kid": schema.StringAttribute{Optional: true, Computed: true,
				Description: d["expected_active_kid"] + " Set it to rotate away from one known key (say, a compromised one) and from no other; " +
					"left out, the provider sends the kid that is active when the rotation is applied.",
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown(), stringplanmodifier.RequiresReplaceIfConfigured()}},
			"rotated": schema.BoolAttribute{Computed: true, PlanModifiers: []planmodifier.Bool{boolplanmodifier.UseStateForUnknown()},
				Description: "Whether the plugin rotated; false when the active kid was no longer expected_active_kid, so nothing was done."},
			"previous_kid": schema.StringAttribute{Computed: true, PlanModifiers: keep,
				Description: "The key that signed before the rotation."},
			"promoted_kid": schema.StringAttribute{Computed: true, PlanModifiers: keep,
				Description: "The key the rotation promoted."},
			"activates_at": schema.Int64Attribute{Computed: true, PlanModifiers: []planmodifier.Int64{int64planmodifier.UseStateForUnknown()},
				Description: "When promoted_kid signs, in Unix seconds: now with force, else once it has been published for publish_lead."},
		},
	}
}

func (r *rotationResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m rotationModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	ring := m.Ring.ValueString()
	expected := ""
	if !m.ExpectedActiveKID.IsUnknown() && !m.ExpectedActiveKID.IsNull() {
		expected = m.ExpectedActiveKID.ValueString()
	} else {
		active, ok := r.activeKID(ctx, ring, &resp.Diagnostics)
		if !ok {
			return
		}
		expected = active
	}

	body := map[string]any{}
	if expected != "" {
		body["expected_active_kid"] = expected
	}
	if m.Force.ValueBool() {
		body["force"] = true
	}
	if m.RevokeActive.ValueBool() {
		body["revoke_active"] = true
	}
	rel := "keys/" + ring + "/rotate"
	var s *api.Secret
	var err error
	if expected != "" {
		// The plugin does nothing unless expected is still active, so the
		// client may retry the request.
		s, err = r.c.write(ctx, rel, body)
	} else {
		// The ring has no active key yet: nothing guards a repeat, so the
		// request is sent once; if its answer is lost, the ring says
		// whether it took effect.
		s, err = r.c.writeOnce(ctx, rel, body)
		var re *api.ResponseError
		if err != nil && !errors.As(err, &re) {
			if active, ok := r.activeKID(ctx, ring, &resp.Diagnostics); ok && active != "" {
				resp.Diagnostics.AddWarning("Rotation recorded from the ring's state",
					fmt.Sprintf("The answer to %s was lost (%v), and ring %q now has active key %s: the rotation is recorded as done and not sent again.", r.c.p(rel), err, ring, active))
				s, err = &api.Secret{Data: map[string]any{"rotated": true, "promoted_kid": active, "previous_kid": "", "activates_at": json.Number("0")}}, nil
			}
		}
	}
	if err != nil {
		addVaultError(&resp.Diagnostics, "Vault refused the rotation of ring "+ring, err, fieldsOf{"force": true, "revoke_active": true, "expected_active_kid": true})
		return
	}
	addWarnings(&resp.Diagnostics, "Warning from "+r.c.p(rel), s)

	data := map[string]any{}
	if s != nil && s.Data != nil {
		data = s.Data
	}
	rotated, _ := data["rotated"].(bool)
	prev, _ := data["previous_kid"].(string)
	promoted, _ := data["promoted_kid"].(string)
	at, _ := data["activates_at"].(json.Number)
	atSecs, _ := at.Int64()
	if !rotated {
		// Nothing done: the answer names the active kid.
		prev, _ = data["active_kid"].(string)
	}
	m.ExpectedActiveKID = types.StringValue(expected)
	m.Rotated = types.BoolValue(rotated)
	m.PreviousKID = types.StringValue(prev)
	m.PromotedKID = types.StringValue(promoted)
	m.ActivatesAt = types.Int64Value(atSecs)
	m.ID = types.StringValue(fmt.Sprintf("%s/%d", ring, time.Now().Unix()))
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// activeKID reads the ring's active kid ("" while its first key is pending).
func (r *rotationResource) activeKID(ctx context.Context, ring string, diags *diag.Diagnostics) (string, bool) {
	s := r.c.readRing(ctx, "ring", ring, diags)
	if s == nil {
		return "", false
	}
	active, _ := s.Data["active_kid"].(string)
	return active, true
}

// Read keeps the record: a rotation is an event, not an object in Vault.
func (r *rotationResource) Read(context.Context, resource.ReadRequest, *resource.ReadResponse) {}

// Update only happens when nothing that matters changed (every argument
// replaces the resource).
func (r *rotationResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	resp.State.Raw = req.Plan.Raw
}

// Delete forgets the record; a rotation cannot be undone.
func (r *rotationResource) Delete(context.Context, resource.DeleteRequest, *resource.DeleteResponse) {
}

const rotationDoc = "One rotation of a key ring (`keys/<name>/rotate`), as code.\n\n" +
	"Creating the resource rotates once. A new value in `triggers` (or in any other argument) replaces the resource, which rotates once more; " +
	"a re-apply with nothing changed does nothing. The rotation is sent with `expected_active_kid`, so a retried request, or an apply after the ring already moved on, never rotates twice: " +
	"when the active kid is no longer the expected one, the plugin does nothing and `rotated` is false.\n\n" +
	"**Destroy** only removes the record from the state: a rotation cannot be undone. There is nothing to import and nothing to check for drift."
