package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// configFields are the fields of the plugin's config (path_config.go).
var configFields = fields{
	{name: "issuer", kind: kString, required: true,
		desc: "URL that is the iss claim of every token and the issuer of the discovery document, normally <VAULT_ADDR>/v1/<mount>. Signing is refused until it is set.",
		strV: []validator.String{stringCheck{desc: "an absolute http(s) URL", check: checkIssuerURL}}},
	{name: "jwks_max_age", kind: kDuration, def: "15m",
		desc: "Upper bound of the JWKS Cache-Control max-age, 1s to 24h. Every ring's publish_lead must be at least twice this.",
		strV: []validator.String{durationBetween("jwks_max_age", 1, 24*3600, "verifiers need a positive max-age and a day is the longest any ring's lead should wait on")}},
	{name: "verifiers", kind: kStrings, def: []string{},
		desc:  "Ids of the declared verifiers, which fetch the JWKS with ?verifier=<id>.",
		listV: []validator.List{listCheck{name: "verifiers", unique: true, item: checkVerifierID}}},
	{name: "verifier_cidrs", kind: kStrings, def: []string{},
		desc:  "Address ranges (CIDR) whose JWKS fetchers count as declared verifiers.",
		listV: []validator.List{listCheck{name: "verifier_cidrs", unique: true, item: checkCIDR}}},
	{name: "publishers_allow_ambient_credentials", kind: kBool, def: false,
		desc: "Whether publishers without credentials of their own may act with the plugin process's (its environment, the instance's cloud role), which are Vault's. Off by default; only a writer of config can turn it on. Cannot be turned off while a publisher relies on it."},
}

type configResource struct{ resourceBase }

var (
	_ resource.ResourceWithConfigure   = &configResource{}
	_ resource.ResourceWithImportState = &configResource{}
)

func newConfigResource() resource.Resource {
	return &configResource{resourceBase{typeSuffix: "_config"}}
}

func (r *configResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = tableSchema(configDoc, "The mount path, which is also the import ID.", configFields, nil)
}

func (r *configResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	// The config exists before the resource does, possibly with other values:
	// every planned value is written, defaults included, so Vault ends up
	// as the plan says. The plan stands in for the configuration, which
	// leaves the defaults out.
	body, d := configFields.writeBody(ctx, req.Plan, req.Plan, nil)
	resp.Diagnostics.Append(d...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.State.Raw = req.Plan.Raw
	if !r.write(ctx, body, &resp.State, &resp.Diagnostics) {
		resp.State.RemoveResource(ctx)
	}
}

func (r *configResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	updateFields(ctx, configFields, req, resp, r.write)
}

// write sends body (if any) and reads the config back into state; written
// is false when Vault refused the write.
func (r *configResource) write(ctx context.Context, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) (written bool) {
	if len(body) > 0 {
		if _, ok := r.c.send(ctx, "config", body, configFields, diags); !ok {
			return false
		}
	}
	r.readInto(ctx, state, diags)
	return true
}

func (r *configResource) readInto(ctx context.Context, state *tfsdk.State, diags *diag.Diagnostics) {
	s, err := r.c.read(ctx, "config")
	if err != nil {
		addVaultError(diags, "Reading "+r.c.p("config"), err, nil)
		return
	}
	if s == nil {
		diags.AddError("Reading "+r.c.p("config"), "The mount returned no config: is the plugin enabled at "+r.c.mount+"?")
		return
	}
	diags.Append(state.SetAttribute(ctx, path.Root("id"), types.StringValue(r.c.mount))...)
	diags.Append(configFields.setFromAPI(ctx, s.Data, state)...)
}

func (r *configResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	r.readInto(ctx, &resp.State, &resp.Diagnostics)
}

func (r *configResource) Delete(_ context.Context, _ resource.DeleteRequest, resp *resource.DeleteResponse) {
	resp.Diagnostics.AddWarning("jwtrotor_config removed from the state only",
		fmt.Sprintf("The plugin's config cannot be deleted: %s keeps its issuer and other values. Terraform no longer manages them.", r.c.p("config")))
}

func (r *configResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	if req.ID != r.c.mount {
		resp.Diagnostics.AddError("Wrong import ID",
			fmt.Sprintf("jwtrotor_config is imported by its mount path, and this provider manages mount %q; run terraform import with %q (or configure the provider's mount as %q)", r.c.mount, r.c.mount, req.ID))
		return
	}
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), types.StringValue(req.ID))...)
}

const configDoc = "The issuer and JWKS caching of the mount (its `config` path).\n\n" +
	"The plugin's config always exists and cannot be deleted. Creating this resource takes it over and writes every attribute, " +
	"so an attribute left out is set to its default rather than kept from before.\n\n" +
	"**Destroy** only removes the resource from the Terraform state: the values stay in Vault as they are, and signing keeps working."
