package tests

import (
	"encoding/json"
	"net/http"
	"testing"
)

// TestNullIsNeverAValue writes JSON null to one field at a time, over HTTP on
// a real Vault, for every row of the report that found three behaviours for
// the same input (an issuer cleared, static claims dropped, others ignored):
// each is a 400 that names the field and says how to keep or clear it, and
// the object reads back byte for byte as before. Then the issuer and a
// role's claims still work: a token is signed and carries the static claim.
func TestNullIsNeverAValue(t *testing.T) {
	t.Parallel()
	m := newMount(t, "nulls", nil)
	createRing(t, m, "k", map[string]any{"algorithm": "ES256", "rotation_period": 43200})
	createRole(t, m, "r", map[string]any{
		"key": "k", "audiences": []string{"api"}, "ttl": 300,
		"claims": map[string]any{"team": "x"}, "allowed_claims": []string{"scope"}, "subject_template": "svc",
	})
	cases := []struct {
		path, field string
		// clear is how the error says to clear the field ("" for fields
		// that cannot be cleared).
		clear string
	}{
		{"config", "issuer", ""},
		{"config", "jwks_max_age", ""},
		{"config", "verifiers", "verifiers=[]"},
		{"keys/k", "rotation_period", ""},
		{"keys/k", "verification_ttl", ""},
		{"keys/k", "algorithm", ""},
		{"roles/r", "audiences", ""},
		{"roles/r", "subject_template", ""},
		{"roles/r", "claims", "claims={}"},
		{"roles/r", "allowed_claims", "allowed_claims=[]"},
		{"roles/r", "ttl", ""},
		{"roles/r", "allow_token_read", ""},
		{"sign/r", "ttl", ""},
		{"sign/r", "claims", ""},
		{"keys/k/rotate", "force", ""},
		{"keys/k/revoke", "kid", ""},
	}
	for _, tc := range cases {
		t.Run(tc.path+" "+tc.field, func(t *testing.T) {
			readPath := tc.path
			if tc.path == "sign/r" || tc.path == "keys/k/rotate" || tc.path == "keys/k/revoke" {
				readPath = "keys/k"
			}
			before := env.root.mustRead(t, m.p(readPath)).Body
			resp := env.root.write(t, m.p(tc.path), map[string]any{tc.field: nil})
			if resp.Status != http.StatusBadRequest {
				t.Fatalf("%s {%q: null}: status %d, want 400: %s", tc.path, tc.field, resp.Status, resp.Body)
			}
			for _, want := range []string{tc.field + ": null", "leave the field out"} {
				if !resp.errorsMention(want) {
					t.Errorf("errors %q do not say %q", resp.Errors, want)
				}
			}
			if tc.clear != "" && !resp.errorsMention(tc.clear) {
				t.Errorf("errors %q do not say how to clear it (%s)", resp.Errors, tc.clear)
			}
			if after := env.root.mustRead(t, m.p(readPath)).Body; !sameData(before, after) {
				t.Errorf("%s changed after a refused null:\nbefore %s\nafter  %s", readPath, before, after)
			}
		})
	}
	// Clearing on purpose works where it makes sense, and the issuer can
	// never be cleared.
	env.root.mustWrite(t, m.p("roles/r"), map[string]any{"allowed_claims": []string{}})
	if got := env.root.mustRead(t, m.p("roles/r")).Data["allowed_claims"]; len(got.([]any)) != 0 {
		t.Errorf("allowed_claims=[] left %v", got)
	}
	if resp := env.root.write(t, m.p("config"), map[string]any{"issuer": ""}); resp.Status != http.StatusBadRequest || !resp.errorsMention("cannot be cleared") {
		t.Errorf("issuer=\"\": status %d, %s; want a 400 that says it cannot be cleared", resp.Status, resp.Body)
	}
	s := env.root.mustWrite(t, m.p("sign/r"), nil)
	tok, _ := s.Data["token"].(string)
	set := fetchJWKS(t, m, "jwks").Set
	_, claims, err := verifyWithJose(tok, set, "ES256")
	if err != nil {
		t.Fatal(err)
	}
	if claims["team"] != "x" || claims["iss"] != m.issuer {
		t.Fatalf("after the null writes a token carries team=%v iss=%v, want x and %s", claims["team"], claims["iss"], m.issuer)
	}
}

// sameData compares two read bodies' data, ignoring request ids.
func sameData(a, b []byte) bool {
	var x, y struct {
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return string(x.Data) == string(y.Data)
}
