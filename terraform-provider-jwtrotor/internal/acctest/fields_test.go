package acctest

import (
	"context"
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/terraform-provider-jwtrotor/internal/provider"
)

// pluginFields returns the write fields of a path of the running plugin,
// with their descriptions, from the OpenAPI document Vault builds from the
// plugin's own field schemas (GET <path>?help=1); path parameters such as
// the name are included.
func pluginFields(t *testing.T, mount, rel string) map[string]string {
	t.Helper()
	resp, err := env.root.Logical().ReadRawWithDataWithContext(context.Background(), mount+"/"+rel, map[string][]string{"help": {"1"}})
	if err != nil {
		t.Fatalf("help for %s: %v", rel, err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI struct {
			Paths map[string]struct {
				Parameters []struct {
					Name        string `json:"name"`
					Description string `json:"description"`
				} `json:"parameters"`
				Post *struct {
					RequestBody struct {
						Content map[string]struct {
							Schema struct {
								Ref string `json:"$ref"`
							} `json:"schema"`
						} `json:"content"`
					} `json:"requestBody"`
				} `json:"post"`
			} `json:"paths"`
			Components struct {
				Schemas map[string]struct {
					Properties map[string]struct {
						Description string `json:"description"`
					} `json:"properties"`
				} `json:"schemas"`
			} `json:"components"`
		} `json:"openapi"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatalf("help for %s: %v", rel, err)
	}
	if len(doc.OpenAPI.Paths) != 1 {
		t.Fatalf("help for %s names %d paths, want 1", rel, len(doc.OpenAPI.Paths))
	}
	out := map[string]string{}
	for _, p := range doc.OpenAPI.Paths {
		for _, param := range p.Parameters {
			out[param.Name] = param.Description
		}
		if p.Post == nil {
			t.Fatalf("%s has no write", rel)
		}
		ref := p.Post.RequestBody.Content["application/json"].Schema.Ref
		schema, ok := doc.OpenAPI.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if !ok {
			t.Fatalf("%s: no schema %q", rel, ref)
		}
		for name, prop := range schema.Properties {
			out[name] = prop.Description
		}
	}
	return out
}

// providerDescriptions returns the attribute descriptions of a resource or
// data source, as Terraform receives them from the provider.
func providerDescriptions(t *testing.T, kind, name string) map[string]string {
	t.Helper()
	server := providerserver.NewProtocol6(provider.New("test")())()
	resp, err := server.GetProviderSchema(context.Background(), &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	schemas := resp.ResourceSchemas
	if kind == "data" {
		schemas = resp.DataSourceSchemas
	}
	s, ok := schemas[name]
	if !ok {
		t.Fatalf("the provider has no %s %s", kind, name)
	}
	out := map[string]string{}
	for _, a := range s.Block.Attributes {
		out[a.Name] = a.Description
	}
	return out
}

// Every field of the plugin's writes has an attribute, and every attribute
// that stands for a plugin field describes it in the plugin's own words:
// when the plugin gains a field (a role's allow_token_read, say), this
// fails until the provider has it.
func TestAccAttributesMatchPluginFields(t *testing.T) {
	need(t)
	mount := newMount(t, "fields")
	cases := []struct {
		kind, name, rel string
		// notFields are attributes of the provider's own, or computed.
		notFields []string
		// notAttrs are plugin fields the provider exposes otherwise.
		notAttrs []string
	}{
		{"resource", "jwtrotor_config", "config", []string{"id"}, nil},
		{"resource", "jwtrotor_key_ring", "keys/x",
			[]string{"id", "force_destroy", "active_kid", "pending_kid", "next_rotation", "signing_keys"},
			[]string{"force"}}, // force_destroy
		{"data", "jwtrotor_key_ring", "keys/x",
			[]string{"id", "active_kid", "pending_kid", "next_rotation", "signing_keys"},
			[]string{"force"}},
		{"resource", "jwtrotor_role", "roles/x", []string{"id"}, nil},
		{"resource", "jwtrotor_rotation", "keys/x/rotate",
			[]string{"id", "ring", "triggers", "rotated", "previous_kid", "promoted_kid", "activates_at"},
			[]string{"name"}}, // ring is the name
		// The azure_blob and gcs fields are no fields of this plugin yet;
		// they are sent only when set.
		{"resource", "jwtrotor_publisher", "publishers/x",
			[]string{"id", "credentials_wo_version", "ambient_credentials", "credentials_set"}, nil},
		{"data", "jwtrotor_publisher", "publishers/x",
			[]string{"id", "ambient_credentials",
				"state", "kids", "behind_seconds", "unserved_kids", "revoked_kids", "last_success", "last_error",
				"last_error_reason", "failures", "acknowledged_via", "max_age", "restored"},
			[]string{"access_key_id", "secret_access_key", "session_token", "username", "password", "account_key", "sas_token", "credentials_json"}}, // write-only
	}
	for _, c := range cases {
		plugin := pluginFields(t, mount, c.rel)
		attrs := providerDescriptions(t, c.kind, c.name)
		skipAttr := map[string]bool{}
		for _, n := range c.notFields {
			skipAttr[n] = true
		}
		skipField := map[string]bool{}
		for _, n := range c.notAttrs {
			skipField[n] = true
		}
		var missing, extra []string
		for field, desc := range plugin {
			if skipField[field] {
				continue
			}
			got, ok := attrs[field]
			if !ok {
				missing = append(missing, field)
				continue
			}
			if !strings.HasPrefix(got, desc) {
				t.Errorf("%s %s.%s: description %q does not start with the plugin's %q", c.kind, c.name, field, got, desc)
			}
		}
		for attr := range attrs {
			if _, ok := plugin[attr]; !ok && !skipAttr[attr] {
				extra = append(extra, attr)
			}
		}
		sort.Strings(missing)
		sort.Strings(extra)
		if len(missing) > 0 {
			t.Errorf("%s %s lacks attributes for the plugin's fields %v (%s)", c.kind, c.name, missing, c.rel)
		}
		if len(extra) > 0 {
			t.Errorf("%s %s has attributes %v that are no field of %s", c.kind, c.name, extra, c.rel)
		}
	}
}
