package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// jwtrotor_publisher (data source): a publisher's settings
// (publishers/<name>) and its entry in the verifier report's publishers
// section (verifiers), which says whether its copies are current.

// publisherReportFields are the fields of a publisher's entry in the
// verifier report (publish.go, report), in the kinds the table knows.
var publisherReportFields = fields{
	{name: "state", kind: kString, desc: "current, behind, failing or never_published."},
	{name: "kids", kind: kStrings, desc: "The kids the publisher's acknowledged copy holds."},
	{name: "behind_seconds", kind: kInt, desc: "How long the copy has been behind the served key set (0 unless state is behind)."},
	{name: "unserved_kids", kind: kStrings, desc: "Kids in the copy that the mount no longer serves."},
	{name: "revoked_kids", kind: kStrings, desc: "Kids in the copy of keys that were revoked."},
	{name: "last_success", kind: kInt, desc: "When the copy was last written and read back (Unix seconds; 0: never)."},
	{name: "last_error", kind: kString, desc: "The last failure (never a store's response body or a credential); empty when none."},
	{name: "last_error_reason", kind: kString, desc: "The last failure's reason, such as unreachable, timeout, denied or server; empty when none."},
	{name: "failures", kind: kInt, desc: "Failed attempts since the last success."},
	{name: "acknowledged_via", kind: kString, desc: "How the copy was read back: public_url or store_api; empty before the first success."},
	{name: "max_age", kind: kInt, desc: "The max-age, in seconds, the copy was written with."},
	{name: "restored", kind: kInt, desc: "How many times a copy changed or deleted outside Vault was written again."},
}

type publisherDataSource struct{ dataSourceBase }

var _ datasource.DataSourceWithConfigure = &publisherDataSource{}

func newPublisherDataSource() datasource.DataSource {
	return &publisherDataSource{dataSourceBase{typeSuffix: "_publisher"}}
}

func (d *publisherDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	attrs := map[string]schema.Attribute{
		"id": schema.StringAttribute{Computed: true, Description: "The publisher's name."},
		"ambient_credentials": schema.BoolAttribute{Computed: true,
			Description: "Whether the publisher has no credentials of its own, and would act with the plugin process's."},
	}
	addNamedAttributes(attrs, append(append(fields{}, publisherFields...), publisherReportFields...))
	resp.Schema = schema.Schema{
		Description:         publisherStatusDoc,
		MarkdownDescription: publisherStatusDoc,
		Attributes:          attrs,
	}
}

func (d *publisherDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var name types.String
	resp.Diagnostics.Append(req.Config.GetAttribute(ctx, path.Root("name"), &name)...)
	if resp.Diagnostics.HasError() {
		return
	}
	rel := "publishers/" + name.ValueString()
	s, err := d.c.read(ctx, rel)
	if err != nil {
		addVaultError(&resp.Diagnostics, "Reading "+d.c.p(rel), err, nil)
		return
	}
	if s == nil {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "No such publisher", fmt.Sprintf("name: no publisher %q at %s", name.ValueString(), d.c.p(rel)))
		return
	}
	report, err := d.c.read(ctx, "verifiers")
	if err != nil {
		addVaultError(&resp.Diagnostics, "Reading "+d.c.p("verifiers"), err, nil)
		return
	}
	var entry map[string]any
	if report != nil {
		pubs, _ := report.Data["publishers"].(map[string]any)
		entry, _ = pubs[name.ValueString()].(map[string]any)
	}
	if entry == nil {
		resp.Diagnostics.AddError("Reading "+d.c.p("verifiers"),
			fmt.Sprintf("the verifier report has no entry for publisher %q; is the plugin older than its publishers?", name.ValueString()))
		return
	}
	resp.State.Raw = req.Config.Raw
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("id"), name)...)
	resp.Diagnostics.Append(publisherFields.setFromAPI(ctx, s.Data, &resp.State)...)
	ambient, _ := s.Data["ambient_credentials"].(bool)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("ambient_credentials"), types.BoolValue(ambient))...)
	resp.Diagnostics.Append(publisherReportFields.setFromAPI(ctx, entry, &resp.State)...)
}

const publisherStatusDoc = "A publisher's settings (`publishers/<name>`, never its credentials) and its entry in the verifier report (`verifiers`, section `publishers`): " +
	"whether the copy in its store holds the keys the mount serves (`state`), which kids it holds, since when it is behind, " +
	"its last success and last failure, and how the copy was read back. " +
	"Read it after the changes it should reflect (`depends_on`); the plugin uploads within seconds of a change, and retries failures."
