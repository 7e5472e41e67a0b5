package provider

import (
	"context"
	"reflect"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
)

func publisherSchema(t *testing.T) schema.Schema {
	t.Helper()
	var resp resource.SchemaResponse
	newPublisherResource().Schema(context.Background(), resource.SchemaRequest{}, &resp)
	if resp.Diagnostics.HasError() {
		t.Fatalf("schema: %v", resp.Diagnostics)
	}
	if d := resp.Schema.ValidateImplementation(context.Background()); d.HasError() {
		t.Fatalf("the framework refuses the schema: %v", d)
	}
	return resp.Schema
}

// Every credential is a write-only attribute, so Terraform never puts it
// in a plan or the state: optional, neither computed nor given a default
// (either would make the framework store a value), and not an ordinary
// sensitive attribute, which Terraform stores. Nothing else is write-only,
// and the version that sends them again is an ordinary number.
func TestPublisherCredentialsAreWriteOnly(t *testing.T) {
	s := publisherSchema(t)
	want := []string{"access_key_id", "secret_access_key", "session_token", "username", "password", "account_key", "sas_token", "credentials_json"}
	var got []string
	for _, c := range publisherCredentials {
		got = append(got, c.name)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("credentials %v, want %v", got, want)
	}
	for _, name := range want {
		a, ok := s.Attributes[name].(schema.StringAttribute)
		if !ok {
			t.Errorf("%s: %T, want a string attribute", name, s.Attributes[name])
			continue
		}
		if !a.WriteOnly || !a.Optional || a.Required || a.Computed || a.Default != nil || a.Sensitive {
			t.Errorf("%s: write-only %v, optional %v, required %v, computed %v, default %v, sensitive %v; want write-only and optional only",
				name, a.WriteOnly, a.Optional, a.Required, a.Computed, a.Default, a.Sensitive)
		}
	}
	for name, a := range s.Attributes {
		if a.IsWriteOnly() && !contains(want, name) {
			t.Errorf("%s is write-only and no credential: it would never reach the state", name)
		}
	}
	v, ok := s.Attributes[credentialsVersion].(schema.Int64Attribute)
	if !ok || !v.Optional || v.WriteOnly || v.Computed {
		t.Errorf("%s: %#v; want an optional number kept in the state", credentialsVersion, s.Attributes[credentialsVersion])
	}
	// A field of some types only is computed, so that ModifyPlan may plan
	// it; the others follow the table.
	for name := range publisherTypeFields {
		if !s.Attributes[name].IsComputed() || !s.Attributes[name].IsOptional() {
			t.Errorf("%s: optional %v, computed %v; want both", name, s.Attributes[name].IsOptional(), s.Attributes[name].IsComputed())
		}
	}
}

// A create sends the credentials given; a rotation sends them and clears
// the other credentials of the publisher's type, never one of another type.
func TestPublisherCredentialsBody(t *testing.T) {
	given := map[string]string{"access_key_id": "AK", "secret_access_key": "SK"}
	if got, want := credentialsBody("s3", given, false), map[string]any{"access_key_id": "AK", "secret_access_key": "SK"}; !reflect.DeepEqual(got, want) {
		t.Errorf("create: %v, want %v", got, want)
	}
	if got, want := credentialsBody("s3", given, true), map[string]any{"access_key_id": "AK", "secret_access_key": "SK", "session_token": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("rotation: %v, want %v", got, want)
	}
	if got, want := credentialsBody("webdav", map[string]string{"password": "P"}, true), map[string]any{"password": "P", "username": ""}; !reflect.DeepEqual(got, want) {
		t.Errorf("webdav rotation: %v, want %v", got, want)
	}
	if got := credentialsBody("webdav", nil, false); len(got) != 0 {
		t.Errorf("create without credentials sends %v", got)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
