package jwtrotor

import (
	"reflect"
	"testing"
)

// config reads back exactly what was written, in the units it was written
// in, and refuses a jwks_max_age that breaks a ring's lead, naming the ring.
func TestConfigReadsBackWhatWasWritten(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	got := e.read("config").Data
	if got["issuer"] != "" || got["jwks_max_age"] != defaultJWKSMaxAgeSeconds {
		t.Fatalf("defaults: %v", got)
	}
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": "2m",
		"verifiers": "gateway,billing,gateway", "verifier_cidrs": []any{"10.0.0.0/8"}})
	got = e.read("config").Data
	want := map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": int64(120),
		"verifiers": []string{"gateway", "billing"}, "verifier_cidrs": []string{"10.0.0.0/8"},
		"publishers_allow_ambient_credentials": false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	// A partial write changes only what it names.
	e.mustWrite("config", map[string]any{"verifiers": []any{}})
	got = e.read("config").Data
	if got["issuer"] != want["issuer"] || len(got["verifiers"].([]string)) != 0 || got["jwks_max_age"] != int64(120) {
		t.Fatalf("after clearing verifiers: %v", got)
	}
	// A longer max-age must leave every ring's lead at least twice it.
	e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	r, err := e.write("config", map[string]any{"jwks_max_age": "6m"})
	expect400(t, r, err, "jwks_max_age", "k (publish_lead 600s)")
	r, err = e.write("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt/"})
	expect400(t, r, err, "issuer", "slash")
}
