package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
)

// clientFrom is the client the provider's Configure made. It is nil before
// the provider is configured (Terraform validates schemas first).
func clientFrom(data any, diags *diag.Diagnostics) *vaultClient {
	if data == nil {
		return nil
	}
	c, ok := data.(*vaultClient)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("expected *vaultClient, got %T", data))
		return nil
	}
	return c
}

// resourceBase is what every resource has: its type name, the provider's
// followed by typeSuffix ("_key_ring"), and the client the provider's
// Configure made.
type resourceBase struct {
	typeSuffix string
	c          *vaultClient
}

func (r *resourceBase) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + r.typeSuffix
}

func (r *resourceBase) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.c = clientFrom(req.ProviderData, &resp.Diagnostics)
}

// dataSourceBase is resourceBase for a data source.
type dataSourceBase struct {
	typeSuffix string
	c          *vaultClient
}

func (d *dataSourceBase) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + d.typeSuffix
}

func (d *dataSourceBase) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.c = clientFrom(req.ProviderData, &resp.Diagnostics)
}

// tableSchema is the schema of a resource declared by a table of fields:
// its id (idDesc says what the id is), the table's attributes, and more.
func tableSchema(doc, idDesc string, table fields, more map[string]schema.Attribute) schema.Schema {
	attrs := map[string]schema.Attribute{
		"id": schema.StringAttribute{
			Computed:      true,
			Description:   idDesc,
			PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()},
		},
	}
	for name, a := range more {
		attrs[name] = a
	}
	for _, f := range table {
		attrs[f.name] = f.resourceAttribute()
	}
	return schema.Schema{
		Description:         doc,
		MarkdownDescription: doc,
		Attributes:          attrs,
	}
}

// updateFields sends the fields of table whose planned value differs from
// the state (never the name of a named object, which is in its path) with
// write, which reads the answer into the state and reports whether Vault
// took the write; when Vault refuses, the state stays as it was.
func updateFields(ctx context.Context, table fields, req resource.UpdateRequest, resp *resource.UpdateResponse,
	write func(ctx context.Context, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) bool) {
	body, d := table.writeBody(ctx, req.Config, req.Plan, req.State, "name")
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.State.Raw = req.Plan.Raw
	if !write(ctx, body, &resp.State, &resp.Diagnostics) {
		resp.State.Raw = req.State.Raw // refused: nothing changed
	}
}
