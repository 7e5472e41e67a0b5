package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// namedResource is what the key ring and role resources share: each
// manages the plugin's object prefix+name, declared by a table of fields,
// and its id and import ID are the name. Read, Delete and ImportState are
// these unless the resource adds to them; its Create and Update go through
// create and update with its own write.
type namedResource struct {
	resourceBase
	what   string // the object in messages: "Key ring", "Role"
	prefix string // "keys/", "roles/"
	table  fields
	// setMore sets what the state holds beyond the id, the name and the
	// table's fields (a ring's status); nil when nothing.
	setMore func(ctx context.Context, data map[string]any, state *tfsdk.State, diags *diag.Diagnostics)
}

// writeFunc writes the body of object name and reads the result into state;
// it reports whether Vault took the write.
type writeFunc func(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) bool

// create creates the object of a plan: it refuses a name Vault already
// has, which is imported rather than created, then writes the planned
// fields.
func (r *namedResource) create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse, write writeFunc) {
	var name types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("name"), &name)...)
	if resp.Diagnostics.HasError() {
		return
	}
	rel := r.prefix + name.ValueString()
	existing, err := r.c.read(ctx, rel)
	if err != nil {
		addVaultError(&resp.Diagnostics, "Reading "+r.c.p(rel), err, nil)
		return
	}
	if existing != nil {
		resp.Diagnostics.AddAttributeError(path.Root("name"), r.what+" already exists",
			fmt.Sprintf("%s already exists; manage it with terraform import (ID %q) instead of creating it", r.c.p(rel), name.ValueString()))
		return
	}
	body, d := r.table.writeBody(ctx, req.Config, req.Plan, nil, "name")
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.State.Raw = req.Plan.Raw
	if !write(ctx, name.ValueString(), body, &resp.State, &resp.Diagnostics) {
		resp.State.RemoveResource(ctx)
	}
}

// update writes the fields the plan changes to the object.
func (r *namedResource) update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse, write writeFunc) {
	var name types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("name"), &name)...)
	updateFields(ctx, r.table, req, resp, func(ctx context.Context, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) bool {
		return write(ctx, name.ValueString(), body, state, diags)
	})
}

func (r *namedResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
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

// readInto reads object name into state; false when it is not there or
// the read failed.
func (r *namedResource) readInto(ctx context.Context, name string, state *tfsdk.State, diags *diag.Diagnostics) bool {
	rel := r.prefix + name
	s, err := r.c.read(ctx, rel)
	if err != nil {
		addVaultError(diags, "Reading "+r.c.p(rel), err, nil)
		return false
	}
	if s == nil {
		return false
	}
	r.setState(ctx, name, s.Data, state, diags)
	return true
}

// setState sets the state from the plugin's read of object name.
func (r *namedResource) setState(ctx context.Context, name string, data map[string]any, state *tfsdk.State, diags *diag.Diagnostics) {
	diags.Append(state.SetAttribute(ctx, path.Root("id"), types.StringValue(name))...)
	diags.Append(state.SetAttribute(ctx, path.Root("name"), types.StringValue(name))...)
	diags.Append(r.table.setFromAPI(ctx, data, state)...)
	if r.setMore != nil {
		r.setMore(ctx, data, state, diags)
	}
}

func (r *namedResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var name types.String
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root("name"), &name)...)
	if resp.Diagnostics.HasError() {
		return
	}
	r.delete(ctx, name.ValueString(), nil, &resp.Diagnostics)
}

// delete deletes object name, with the query given; false when Vault
// refused.
func (r *namedResource) delete(ctx context.Context, name string, query map[string][]string, diags *diag.Diagnostics) bool {
	rel := r.prefix + name
	s, err := r.c.delete(ctx, rel, query)
	if err != nil {
		addVaultError(diags, "Vault refused to delete "+r.c.p(rel), err, nil)
		return false
	}
	addWarnings(diags, "Warning from "+r.c.p(rel), s)
	return true
}

func (r *namedResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), types.StringValue(req.ID))...)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), types.StringValue(req.ID))...)
}
