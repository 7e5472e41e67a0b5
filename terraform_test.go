package jwtrotor

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// The Terraform provider's vault_generic_endpoint with
// ignore_absent_fields = true writes data_json, reads the path back, and
// reports drift for every written field whose read value differs. This test
// replays that cycle on config, keys/<name> and roles/<name>, for a first
// apply and for a change, with data as the HTTP layer decodes it (numbers as
// json.Number) and the read as the client sees it (through JSON).
func TestTerraformGenericEndpointNoDrift(t *testing.T) {
	t.Parallel()
	steps := []struct {
		path     string
		dataJSON string
	}{
		{"config", `{"issuer":"https://vault.example.com/v1/jwt","jwks_max_age":300,"verifiers":["gateway","billing"],"verifier_cidrs":["10.0.0.0/8"]}`},
		{"keys/payments", `{"algorithm":"ES256","rotation_period":3600,"verification_ttl":7200,"publish_lead":1800}`},
		{"keys/legacy", `{"algorithm":"RS256","rsa_bits":3072,"rotation_period":86400,"verification_ttl":86400}`},
		{"roles/api", `{"key":"payments","audiences":["https://api.example.com","https://admin.example.com"],"ttl":600,"max_ttl":1800,"subject_template":"{{identity.entity.name}}","allowed_subjects":["svc-*"],"claims":{"tier":"gold","limits":{"rps":10,"burst":[1,2]}},"allowed_claims":["scope"],"token_type":"at+jwt"}`},
		{"roles/minimal", `{"key":"legacy","audiences":["https://x.example.com"]}`},
		// A second apply that changes fields.
		{"config", `{"jwks_max_age":600,"verifiers":[]}`},
		{"keys/payments", `{"algorithm":"EdDSA","rotation_period":7200,"verification_ttl":7200,"publish_lead":3600}`},
		{"roles/api", `{"ttl":900,"allowed_claims":["scope","region"],"claims":{}}`},
	}
	e := newEnv(t)
	for _, st := range steps {
		var data map[string]any
		dec := json.NewDecoder(strings.NewReader(st.dataJSON))
		dec.UseNumber()
		if err := dec.Decode(&data); err != nil {
			t.Fatal(err)
		}
		e.mustWrite(st.path, data)
		read := e.read(st.path)
		if read == nil {
			t.Fatalf("%s: read after write found nothing", st.path)
		}
		got := normalize(t, read.Data)
		want := normalize(t, data)
		for field, w := range want {
			if g, ok := got[field]; !ok || !reflect.DeepEqual(g, w) {
				t.Errorf("%s: drift on %s: wrote %v, read %v", st.path, field, w, g)
			}
		}
	}
}

// normalize passes v through JSON as a client would see it.
func normalize(t *testing.T, v any) map[string]any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// Reads of config and roles return exactly the fields writes accept.
func TestReadsReturnWritableFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	for _, path := range []string{"config", "roles/r"} {
		route := e.b.Route(path)
		read := e.read(path).Data
		for f := range read {
			if _, ok := route.Fields[f]; !ok {
				t.Errorf("%s: read returns %s, which writes do not accept", path, f)
			}
		}
		for f := range route.Fields {
			if _, ok := read[f]; !ok && f != "name" {
				t.Errorf("%s: writes accept %s, which reads do not return", path, f)
			}
		}
	}
	// keys/<name> returns its settings plus computed state.
	read := e.read("keys/k").Data
	for _, f := range []string{"algorithm", "rsa_bits", "rotation_period", "verification_ttl", "publish_lead", "signing_keys", "next_rotation"} {
		if _, ok := read[f]; !ok {
			t.Errorf("keys/k: read lacks %s", f)
		}
	}
}
