package provider

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/tfsdk"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// publisherFields are the fields of publishers/<name> (path_publishers.go)
// that a read returns, one entry per field; the credentials, which no read
// returns, are publisherCredentials.
var publisherFields = fields{
	{name: "name", kind: kString, required: true, replace: true,
		desc: "Name of the publisher.", strV: []validator.String{nameCheck("name")}},
	// Which store; the plugin refuses a change of type, so a new type
	// replaces the publisher. Not checked at plan time: the plugin's list of
	// types grows, and its refusal names the types it knows.
	{name: "type", kind: kString, required: true, replace: true,
		desc: "s3 (AWS S3 or an S3-compatible store), webdav (HTTP PUT to a base URL), azure_blob (an Azure Blob Storage container) or gcs (Google Cloud Storage). Required on create; fixed after."},
	{name: "bucket", kind: kString,
		desc: "type=s3 and type=gcs: the bucket's name. Required."},
	{name: "region", kind: kString,
		desc: "type=s3: the bucket's region, such as eu-west-1. Required."},
	{name: "endpoint", kind: kString,
		desc: "type=s3: the store's URL, for an S3-compatible store; empty for AWS. type=gcs: the store's base URL (the JSON API is under /storage/v1/), for a private endpoint or an emulator; empty for Cloud Storage. https, or http on a loopback address."},
	{name: "path_style", kind: kBool,
		desc: "type=s3: address the bucket in the path (endpoint/bucket/key) rather than in the host name."},
	{name: "url", kind: kString,
		desc: "type=webdav: the base URL, ending with a slash, that objects are PUT under. Required. https, or http on a loopback address."},
	{name: "account_url", kind: kString,
		desc: "type=azure_blob: the storage account's Blob service URL, such as https://<account>.blob.core.windows.net. Required. https, or http on a loopback address."},
	{name: "account_name", kind: kString,
		desc: "type=azure_blob: the storage account's name, for a shared key; give it with account_key."},
	{name: "container", kind: kString,
		desc: "type=azure_blob: the container's name ($web allowed). Required."},
	{name: "prefix", kind: kString, def: "",
		desc: "Prepended to every object name; empty or ending with a slash, such as tenant-a/."},
	{name: "jwks_path", kind: kString, def: ".well-known/jwks.json",
		desc: "Where the JWKS is written, under prefix."},
	{name: "ring", kind: kString, def: "",
		desc: "Publish this ring's JWKS (jwks/<ring>) instead of the mount's. Empty: the mount's."},
	{name: "public_url", kind: kString, def: "",
		desc: "Where verifiers read the copies: the URL of prefix, ending with a slash. When it is the issuer plus a slash, the discovery document is written too. https, or http on a loopback address; no user info, query or fragment."},
	{name: "required", kind: kBool, def: false,
		desc: "Whether a key's activation waits (on rings with max_activation_delay above 0) until this publisher's acknowledged copy holds it."},
	// Not checked at plan time: whether a profile fits depends on the
	// mount's rings, which only the plugin knows; its refusal names them.
	{name: "profile", kind: kString, def: "generic",
		desc: "The verifier the copy is for: generic (anything the plugin serves), aws (IAM OIDC providers: RS256/384/512 and ES256/384/512, at most 100 keys of each type, an https issuer without port or query), gcp (Workload Identity Federation: RSA and EC keys) or azure (Entra federated credentials: RS256 only). A ring, or a later change to it, that the profile cannot carry is refused."},
}

// publisherTypeFields are the fields that belong to some types only (gcs
// shares bucket and endpoint with s3). Each is sent only when the
// configuration sets it or a change clears it: the plugin refuses a field
// of another type, and a plugin that does not know a type yet refuses its
// fields too. A field of the publisher's own type that the configuration
// leaves out is planned as its zero value, which is what the plugin reads
// back; a field of another type stays null.
var publisherTypeFields = map[string][]string{
	"bucket": {"s3", "gcs"}, "region": {"s3"}, "endpoint": {"s3", "gcs"}, "path_style": {"s3"},
	"url":         {"webdav"},
	"account_url": {"azure_blob"}, "account_name": {"azure_blob"}, "container": {"azure_blob"},
}

// publisherCredential is a write-only field of the plugin: a write
// replaces it ("" clears it) and a read says only whether it is set.
type publisherCredential struct {
	name, typ, desc string
}

// publisherCredentials are the write-only fields, each of one type. The
// webdav username is one of them, although a user name is no secret: the
// plugin stores it write-only (a read answers username_set, never the
// name), so Terraform could neither read it back, nor see it changed
// outside Terraform, nor import it; and it goes with the password, so the
// two change together, with credentials_wo_version.
var publisherCredentials = []publisherCredential{
	{"access_key_id", "s3", "type=s3: access key id. Write-only; give it with secret_access_key, or neither to use ambient credentials where config allows them; \"\" clears it."},
	{"secret_access_key", "s3", "type=s3: secret access key. Write-only; \"\" clears it."},
	{"session_token", "s3", "type=s3: session token of temporary credentials. Write-only; \"\" clears it."},
	{"username", "webdav", "type=webdav: user for HTTP Basic authentication. Write-only; give it with password; \"\" clears it."},
	{"password", "webdav", "type=webdav: password for HTTP Basic authentication. Write-only; \"\" clears it."},
	{"account_key", "azure_blob", "type=azure_blob: the storage account's access key (shared key). Write-only; give it with account_name, or give sas_token instead; \"\" clears it."},
	{"sas_token", "azure_blob", "type=azure_blob: a SAS token (the query string of a shared access signature) allowing reads and writes of the container's blobs. Write-only; \"\" clears it."},
	{"credentials_json", "gcs", "type=gcs: a service account key (the JSON key file's content). Write-only; leave it out to use ambient credentials where config allows them (application default credentials, or none for a loopback endpoint); \"\" clears it."},
}

const credentialsVersion = "credentials_wo_version"

const writeOnlyNote = " In Terraform a write-only attribute (Terraform 1.11 or newer): never in the plan or the state; sent when the publisher is created and whenever " + credentialsVersion + " changes."

type publisherResource struct{ namedResource }

var (
	_ resource.ResourceWithConfigure      = &publisherResource{}
	_ resource.ResourceWithImportState    = &publisherResource{}
	_ resource.ResourceWithModifyPlan     = &publisherResource{}
	_ resource.ResourceWithValidateConfig = &publisherResource{}
)

func newPublisherResource() resource.Resource {
	r := &publisherResource{namedResource{resourceBase: resourceBase{typeSuffix: "_publisher"},
		what: "Publisher", prefix: "publishers/", table: publisherFields}}
	r.setMore = setPublisherStatus
	return r
}

func (r *publisherResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	more := map[string]schema.Attribute{
		credentialsVersion: schema.Int64Attribute{Optional: true,
			Description: "Any number; changing it is what sends the credentials again. Credentials are write-only, so Terraform cannot see " +
				"that they changed: to rotate them, give the new values and change this number in the same apply. Required when a credential is given."},
		"ambient_credentials": schema.BoolAttribute{Computed: true,
			Description: "Whether the publisher has no credentials of its own, and would act with the plugin process's."},
		"credentials_set": schema.ListAttribute{Computed: true, ElementType: types.StringType,
			Description: "The credentials the plugin has stored for the publisher (by name, never by value), sorted."},
	}
	for _, c := range publisherCredentials {
		more[c.name] = schema.StringAttribute{Optional: true, WriteOnly: true,
			Description: c.desc + writeOnlyNote, MarkdownDescription: c.desc + writeOnlyNote}
	}
	s := tableSchema(publisherDoc, "The publisher's name, which is also the import ID.", publisherFields, more)
	// A field of some types only is computed: ModifyPlan plans its zero
	// value for a publisher of its type, null for the others.
	for name := range publisherTypeFields {
		switch a := s.Attributes[name].(type) {
		case schema.StringAttribute:
			a.Computed = true
			s.Attributes[name] = a
		case schema.BoolAttribute:
			a.Computed = true
			s.Attributes[name] = a
		default:
			panic("publisher field of unexpected kind: " + name)
		}
	}
	resp.Schema = s
}

// ValidateConfig asks for credentials_wo_version with credentials: without
// it a change of a credential in the configuration could never reach the
// plugin, and no plan would say so.
func (r *publisherResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var version types.Int64
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(credentialsVersion), &version)...)
	if !version.IsNull() {
		return
	}
	for _, c := range publisherCredentials {
		var v types.String
		resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root(c.name), &v)...)
		if !v.IsNull() {
			resp.Diagnostics.AddAttributeError(path.Root(c.name), "Missing "+credentialsVersion,
				fmt.Sprintf("%s: needs %s; a credential is write-only and never reaches the state, so only a change of %s tells Terraform to send it again (start with %s = 1)",
					c.name, credentialsVersion, credentialsVersion, credentialsVersion))
			return
		}
	}
}

// ModifyPlan plans the fields of some types only: the configuration's
// value, else the zero value (what the plugin reads back) for a field of
// the publisher's type and null for a field of another type.
func (r *publisherResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() {
		return
	}
	var typ types.String
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root("type"), &typ)...)
	if resp.Diagnostics.HasError() || typ.IsUnknown() {
		return
	}
	for _, f := range publisherFields {
		owners, ok := publisherTypeFields[f.name]
		if !ok {
			continue
		}
		cv, d := f.get(ctx, req.Config)
		resp.Diagnostics.Append(d...)
		if d.HasError() || !cv.IsNull() {
			continue
		}
		var v attr.Value = types.StringNull()
		if f.kind == kBool {
			v = types.BoolNull()
		}
		for _, t := range owners {
			if t != typ.ValueString() {
				continue
			}
			v = types.StringValue("")
			if f.kind == kBool {
				v = types.BoolValue(false)
			}
		}
		resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root(f.name), v)...)
	}
}

func (r *publisherResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.create(ctx, req, resp, func(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) bool {
		given, typ := r.credentialsOf(ctx, req.Config, diags)
		for k, v := range credentialsBody(typ, given, false) {
			body[k] = v
		}
		return r.write(ctx, name, body, state, diags)
	})
}

func (r *publisherResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var planned, stored types.Int64
	resp.Diagnostics.Append(req.Plan.GetAttribute(ctx, path.Root(credentialsVersion), &planned)...)
	resp.Diagnostics.Append(req.State.GetAttribute(ctx, path.Root(credentialsVersion), &stored)...)
	rotate := !planned.Equal(stored)
	r.update(ctx, req, resp, func(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) bool {
		if rotate {
			given, typ := r.credentialsOf(ctx, req.Config, diags)
			for k, v := range credentialsBody(typ, given, true) {
				body[k] = v
			}
		}
		return r.write(ctx, name, body, state, diags)
	})
}

// credentialsOf returns the credentials the configuration gives, by name,
// and the publisher's type.
func (r *publisherResource) credentialsOf(ctx context.Context, config tfsdk.Config, diags *diag.Diagnostics) (map[string]string, string) {
	var typ types.String
	diags.Append(config.GetAttribute(ctx, path.Root("type"), &typ)...)
	given := map[string]string{}
	for _, c := range publisherCredentials {
		var v types.String
		diags.Append(config.GetAttribute(ctx, path.Root(c.name), &v)...)
		if !v.IsNull() && !v.IsUnknown() {
			given[c.name] = v.ValueString()
		}
	}
	return given, typ.ValueString()
}

// credentialsBody is what a write sends of the credentials: those given.
// A rotation (replace) also clears ("") the credentials of the publisher's
// type that the configuration no longer gives, so the stored set is the
// configuration's (a session token dropped with the keys it went with); it
// never names a credential of another type, which the plugin refuses.
func credentialsBody(typ string, given map[string]string, replace bool) map[string]any {
	body := map[string]any{}
	for _, c := range publisherCredentials {
		if v, ok := given[c.name]; ok {
			body[c.name] = v
		} else if replace && c.typ == typ {
			body[c.name] = ""
		}
	}
	return body
}

// write sends body (if any) to publishers/<name> and reads the publisher
// back into state; written is false when Vault refused the write.
func (r *publisherResource) write(ctx context.Context, name string, body map[string]any, state *tfsdk.State, diags *diag.Diagnostics) (written bool) {
	rel := "publishers/" + name
	if len(body) > 0 {
		if _, ok := r.c.send(ctx, rel, body, publisherSendFields, diags); !ok {
			return false
		}
	}
	if !r.readInto(ctx, name, state, diags) && !diags.HasError() {
		diags.AddError("Reading "+r.c.p(rel), "The publisher is gone right after its write.")
	}
	return true
}

// publisherSendFields name the attributes a refusal of the plugin may point
// at: the table's and the credentials.
var publisherSendFields = func() fields {
	out := append(fields{}, publisherFields...)
	for _, c := range publisherCredentials {
		out = append(out, field{name: c.name, kind: kString})
	}
	return out
}()

// setPublisherStatus sets what a read says of the credentials: whether the
// publisher relies on ambient credentials, and which are stored.
func setPublisherStatus(ctx context.Context, data map[string]any, state *tfsdk.State, diags *diag.Diagnostics) {
	ambient, _ := data["ambient_credentials"].(bool)
	diags.Append(state.SetAttribute(ctx, path.Root("ambient_credentials"), types.BoolValue(ambient))...)
	var set []string
	for k, v := range data {
		if name, ok := strings.CutSuffix(k, "_set"); ok && v == true {
			set = append(set, name)
		}
	}
	sort.Strings(set)
	diags.Append(state.SetAttribute(ctx, path.Root("credentials_set"), stringList(set))...)
}

const publisherDoc = "A publisher (`publishers/<name>`): an S3 bucket or WebDAV server where the plugin puts copies of the JWKS " +
	"(and of the discovery document, when `public_url` is the issuer plus a slash) for verifiers that cannot reach Vault. " +
	"`jwtrotor_publisher` as a data source reports whether the copies are current.\n\n" +
	"Every attribute but the name and the type changes in place; an attribute left out of the configuration is the plugin's default. " +
	"A field of another type than the publisher's is not sent unless the configuration sets it (and then the plugin refuses it).\n\n" +
	"**Credentials** (`access_key_id`, `secret_access_key`, `session_token`; `username`, `password`; `account_key`, `sas_token`; `credentials_json`) " +
	"are write-only attributes (Terraform 1.11 or newer): Terraform passes them to the provider, which sends them to Vault, and they are never " +
	"in the plan or the state (the plugin never returns them either; `credentials_set` lists which are stored). " +
	"Because Terraform keeps no copy, it cannot tell when they change: they are sent when the publisher is created, and again whenever `" +
	credentialsVersion + "` changes. To rotate credentials, give the new values and change `" + credentialsVersion + "` (to any other number) " +
	"in the same apply; the credentials of the publisher's type that the configuration no longer gives are then cleared. " +
	"Changing a credential without changing `" + credentialsVersion + "` changes nothing. " +
	"The webdav `username` is write-only too: the plugin stores it as a credential, and it changes with the password.\n\n" +
	"**Import** by name sets every attribute but the credentials and `" + credentialsVersion + "`; " +
	"the first apply after it sends the configuration's credentials, as `" + credentialsVersion + "` changes from null.\n\n" +
	"**Destroy** deletes the publisher: the copies it wrote stay in the store, and are no longer kept up to date."
