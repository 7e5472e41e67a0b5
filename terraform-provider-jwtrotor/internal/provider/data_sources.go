package provider

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// jwtrotor_jwks

type jwksDataSource struct{ dataSourceBase }

var _ datasource.DataSourceWithConfigure = &jwksDataSource{}

func newJWKSDataSource() datasource.DataSource {
	return &jwksDataSource{dataSourceBase{typeSuffix: "_jwks"}}
}

type jwksModel struct {
	ID   types.String `tfsdk:"id"`
	Ring types.String `tfsdk:"ring"`
	JSON types.String `tfsdk:"json"`
	KIDs types.List   `tfsdk:"kids"`
}

func (d *jwksDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description:         jwksDoc,
		MarkdownDescription: jwksDoc,
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "The Vault path read."},
			"ring": schema.StringAttribute{Optional: true, Validators: []validator.String{nameCheck("ring")},
				Description: "Key ring whose keys to serve. Left out: every ring of the mount."},
			"json": schema.StringAttribute{Computed: true,
				Description: "The JWKS document exactly as the mount serves it ({\"keys\": [...]})."},
			"kids": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				Description: "The kids in the document, in its order."},
		},
	}
}

func (d *jwksDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m jwksModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	rel := "jwks"
	if !m.Ring.IsNull() {
		rel = "jwks/" + m.Ring.ValueString()
	}
	body, err := d.c.readDocument(ctx, rel)
	if err != nil {
		addVaultError(&resp.Diagnostics, "Reading "+d.c.p(rel), err, nil)
		return
	}
	var doc struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		resp.Diagnostics.AddError("Reading "+d.c.p(rel), fmt.Sprintf("not a JWKS: %v", err))
		return
	}
	kids := make([]string, 0, len(doc.Keys))
	for _, k := range doc.Keys {
		kids = append(kids, k.KID)
	}
	m.ID = types.StringValue(d.c.p(rel))
	m.JSON = types.StringValue(string(body))
	m.KIDs = stringList(kids)
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// jwtrotor_openid_configuration

type openIDDataSource struct{ dataSourceBase }

var _ datasource.DataSourceWithConfigure = &openIDDataSource{}

func newOpenIDConfigurationDataSource() datasource.DataSource {
	return &openIDDataSource{dataSourceBase{typeSuffix: "_openid_configuration"}}
}

type openIDModel struct {
	ID          types.String `tfsdk:"id"`
	Issuer      types.String `tfsdk:"issuer"`
	JWKSURI     types.String `tfsdk:"jwks_uri"`
	SigningAlgs types.List   `tfsdk:"id_token_signing_alg_values_supported"`
	JSON        types.String `tfsdk:"json"`
}

func (d *openIDDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description:         openIDDoc,
		MarkdownDescription: openIDDoc,
		Attributes: map[string]schema.Attribute{
			"id":       schema.StringAttribute{Computed: true, Description: "The Vault path read."},
			"issuer":   schema.StringAttribute{Computed: true, Description: "The issuer, as the config sets it."},
			"jwks_uri": schema.StringAttribute{Computed: true, Description: "URL of the mount-wide JWKS."},
			"id_token_signing_alg_values_supported": schema.ListAttribute{Computed: true, ElementType: types.StringType,
				Description: "Algorithms of the keys in the JWKS."},
			"json": schema.StringAttribute{Computed: true, Description: "The document exactly as the mount serves it."},
		},
	}
}

func (d *openIDDataSource) Read(ctx context.Context, _ datasource.ReadRequest, resp *datasource.ReadResponse) {
	rel := ".well-known/openid-configuration"
	body, err := d.c.readDocument(ctx, rel)
	if err != nil {
		addVaultError(&resp.Diagnostics, "Reading "+d.c.p(rel), err, nil)
		return
	}
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		resp.Diagnostics.AddError("Reading "+d.c.p(rel), fmt.Sprintf("not a discovery document: %v", err))
		return
	}
	m := openIDModel{
		ID:          types.StringValue(d.c.p(rel)),
		Issuer:      types.StringValue(doc.Issuer),
		JWKSURI:     types.StringValue(doc.JWKSURI),
		SigningAlgs: stringList(doc.Algs),
		JSON:        types.StringValue(string(body)),
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, &m)...)
}

// jwtrotor_key_ring

type keyRingDataSource struct{ dataSourceBase }

var _ datasource.DataSourceWithConfigure = &keyRingDataSource{}

func newKeyRingDataSource() datasource.DataSource {
	return &keyRingDataSource{dataSourceBase{typeSuffix: "_key_ring"}}
}

func (d *keyRingDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := ringStatusDataSourceAttributes()
	attrs["id"] = schema.StringAttribute{Computed: true, Description: "The ring's name."}
	addNamedAttributes(attrs, keyRingFields)
	resp.Schema = schema.Schema{
		Description:         keyRingStatusDoc,
		MarkdownDescription: keyRingStatusDoc,
		Attributes:          attrs,
	}
}

func (d *keyRingDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var name types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("name"), &name)...)
	if resp.Diagnostics.HasError() {
		return
	}
	s := d.c.readRing(ctx, "name", name.ValueString(), &resp.Diagnostics)
	if s == nil {
		return
	}
	resp.State.Raw = req.Config.Raw
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
	resp.Diagnostics.Append(keyRingFields.setFromAPI(ctx, s.Data, &resp.State)...)
	resp.Diagnostics.Append(setRingStatus(ctx, s.Data, &resp.State)...)
	addWarnings(&resp.Diagnostics, "Warning from "+d.c.p("keys/"+name.ValueString()), s)
}

// addNamedAttributes adds the attributes of a data source that reads the
// object of table by its name: the name, which the configuration gives,
// and every other field, computed.
func addNamedAttributes(attrs map[string]schema.Attribute, table fields) {
	for _, f := range table {
		if f.name == "name" {
			attrs["name"] = schema.StringAttribute{Required: true, Description: f.desc, Validators: f.strV}
			continue
		}
		attrs[f.name] = f.dataSourceAttribute()
	}
}

const jwksDoc = "The JWKS the mount serves to verifiers (`jwks`, or `jwks/<ring>` for one ring), for a consumer that takes an uploaded key set instead of fetching the URL. " +
	"It holds public keys only. Read it after the rotations it should reflect (`depends_on`)."

const openIDDoc = "The OpenID discovery document of the mount (`.well-known/openid-configuration`): the issuer, the JWKS URL and the signing algorithms in use. " +
	"Reading it fails, with the plugin's message, until the config sets the issuer."

const keyRingStatusDoc = "The settings and status of a key ring (`keys/<name>`): which kid signs, which is next and when, and every key's state and timestamps."
