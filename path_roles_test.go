package jwtrotor

import (
	"reflect"
	"testing"
)

// A role reads back exactly what was written; a create starts from the
// defaults, an update changes only what it names; a role needs its ring,
// named in lower case, and an overlap that covers its longest token.
func TestRoleReadsBackWhatWasWritten(t *testing.T) {
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	r, err := e.write("roles/r", map[string]any{"key": "nope", "audiences": "api"})
	expect400(t, r, err, "key", "no key ring")
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api,admin", "claims": map[string]any{"team": "x"}, "allowed_claims": "scope"})
	want := map[string]any{
		"key": "k", "audiences": []string{"api", "admin"}, "ttl": defaultRoleTTL, "max_ttl": defaultRoleMaxTTL,
		"subject_template": defaultSubjectTemplate, "allowed_subjects": []string{}, "claims": map[string]any{"team": "x"},
		"allowed_claims": []string{"scope"}, "token_type": "JWT", "allow_token_read": false,
	}
	if got := e.read("roles/r").Data; !reflect.DeepEqual(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	e.mustWrite("roles/r", map[string]any{"ttl": "5m", "allow_token_read": true})
	want["ttl"], want["allow_token_read"] = int64(300), true
	if got := e.read("roles/r").Data; !reflect.DeepEqual(got, want) {
		t.Fatalf("after an update: %v, want %v", got, want)
	}
	r, err = e.write("roles/r", map[string]any{"max_ttl": "3h"})
	expect400(t, r, err, "max_ttl", "verification_ttl")
	r, err = e.write("roles/r", map[string]any{"key": "K"})
	expect400(t, r, err, "key", "lower case")
}
