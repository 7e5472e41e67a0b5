// Package provider is the Terraform provider of vault-plugin-jwt-rotor: typed
// resources for the plugin's config, key rings, roles, rotations and
// publishers, and data sources for its JWKS, ring status, discovery document
// and publisher status.
package provider

import (
	"context"
	"os"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/vault/api"
)

// DefaultMount is where the plugin is enabled unless the provider says otherwise.
const DefaultMount = "jwt"

type jwtRotorProvider struct {
	version string
}

// New returns a constructor of the provider, as providerserver.Serve and the
// acceptance tests' provider factories take it.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &jwtRotorProvider{version: version} }
}

type providerModel struct {
	Address   types.String `tfsdk:"address"`
	Token     types.String `tfsdk:"token"`
	Namespace types.String `tfsdk:"namespace"`
	Mount     types.String `tfsdk:"mount"`
}

func (p *jwtRotorProvider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "jwtrotor"
	resp.Version = p.version
}

func (p *jwtRotorProvider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Manages the vault-plugin-jwt-rotor secrets engine of one Vault mount: config, key rings, roles, rotations and publishers.",
		Attributes: map[string]schema.Attribute{
			"address": schema.StringAttribute{
				Optional:    true,
				Description: "URL of the Vault server, such as https://vault.example.com:8200. Defaults to the VAULT_ADDR environment variable.",
			},
			"token": schema.StringAttribute{
				Optional:    true,
				Sensitive:   true,
				Description: "Vault token. Defaults to the VAULT_TOKEN environment variable. Never stored in the state.",
			},
			"namespace": schema.StringAttribute{
				Optional:    true,
				Description: "Vault namespace of the mount (Vault Enterprise). Defaults to the VAULT_NAMESPACE environment variable.",
			},
			"mount": schema.StringAttribute{
				Optional:    true,
				Description: "Path the plugin is enabled at, without slashes. Defaults to jwt.",
				Validators:  []validator.String{mountPathValidator{}},
			},
		},
	}
}

func (p *jwtRotorProvider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var cfg providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &cfg)...)
	if resp.Diagnostics.HasError() {
		return
	}
	for name, v := range map[string]types.String{"address": cfg.Address, "token": cfg.Token, "namespace": cfg.Namespace, "mount": cfg.Mount} {
		if v.IsUnknown() {
			resp.Diagnostics.AddAttributeError(path.Root(name), "Unknown provider setting",
				"The provider's "+name+" is not known until apply; give a value known at plan time (a literal, a variable or an environment variable).")
		}
	}
	if resp.Diagnostics.HasError() {
		return
	}

	conf := api.DefaultConfig()
	if conf.Error != nil {
		resp.Diagnostics.AddError("Vault client settings", conf.Error.Error())
		return
	}
	if v := cfg.Address.ValueString(); v != "" {
		conf.Address = v
	} else if os.Getenv(api.EnvVaultAddress) == "" {
		resp.Diagnostics.AddAttributeError(path.Root("address"), "No Vault address",
			"Set the provider's address or the VAULT_ADDR environment variable.")
		return
	}
	client, err := api.NewClient(conf)
	if err != nil {
		resp.Diagnostics.AddError("Vault client", err.Error())
		return
	}
	token := cfg.Token.ValueString()
	if token == "" {
		token = os.Getenv(api.EnvVaultToken)
	}
	if token == "" {
		resp.Diagnostics.AddAttributeError(path.Root("token"), "No Vault token",
			"Set the provider's token or the VAULT_TOKEN environment variable.")
		return
	}
	client.SetToken(token)
	ns := cfg.Namespace.ValueString()
	if ns == "" {
		ns = os.Getenv(api.EnvVaultNamespace)
	}
	if ns != "" {
		client.SetNamespace(ns)
	} else {
		client.ClearNamespace()
	}
	mount := strings.Trim(cfg.Mount.ValueString(), "/")
	if mount == "" {
		mount = DefaultMount
	}
	c := &vaultClient{api: client, mount: mount}
	resp.ResourceData = c
	resp.DataSourceData = c
}

func (p *jwtRotorProvider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{
		newConfigResource,
		newKeyRingResource,
		newRoleResource,
		newRotationResource,
		newPublisherResource,
	}
}

func (p *jwtRotorProvider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{
		newJWKSDataSource,
		newKeyRingDataSource,
		newOpenIDConfigurationDataSource,
		newPublisherDataSource,
	}
}
