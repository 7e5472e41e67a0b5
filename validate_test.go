package jwtrotor

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Every class of bad input is a 400 whose message names the field (and the
// bound or the fix), and storage is byte-for-byte unchanged afterwards.
func TestBadInput(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		path      string
		data      map[string]any
		fragments []string
	}{
		// Unknown fields, on every writable path.
		{"unknown config field", "config", map[string]any{"isuer": "https://x"}, []string{"isuer", "spelling"}},
		{"unknown key field", "keys/k", map[string]any{"rotation_perod": "1h"}, []string{"rotation_perod"}},
		{"unknown new key field", "keys/new", map[string]any{"algorithm": "ES256", "exportable": true}, []string{"exportable"}},
		{"unknown role field", "roles/r", map[string]any{"audience": "x"}, []string{"audience"}},
		{"unknown sign field", "sign/r", map[string]any{"claim": "{}"}, []string{"claim"}},
		{"rotate field on revoke", "keys/k/revoke", map[string]any{"force": true}, []string{"force"}},
		// Durations.
		{"bad duration", "keys/k", map[string]any{"rotation_period": "soon"}, []string{"rotation_period", "duration"}},
		{"negative duration", "keys/k", map[string]any{"verification_ttl": "-5m"}, []string{"verification_ttl", "negative"}},
		{"huge duration", "keys/k", map[string]any{"rotation_period": "999999h"}, []string{"rotation_period", "ten-year"}},
		{"fractional duration", "roles/r", map[string]any{"ttl": 1.5}, []string{"ttl", "whole"}},
		{"short period", "keys/k", map[string]any{"rotation_period": 9}, []string{"rotation_period", "10s"}},
		// Algorithms and sizes.
		{"unknown algorithm", "keys/new", map[string]any{"algorithm": "ES257"}, []string{"algorithm", "ES256"}},
		{"alg none", "keys/new", map[string]any{"algorithm": "none"}, []string{"algorithm", "never"}},
		{"alg NONE", "keys/new", map[string]any{"algorithm": "NONE"}, []string{"algorithm"}},
		{"alg HS256", "keys/new", map[string]any{"algorithm": "HS256"}, []string{"algorithm", "HMAC"}},
		{"alg lower case", "keys/new", map[string]any{"algorithm": "rs256"}, []string{"algorithm"}},
		{"small RSA", "keys/new", map[string]any{"algorithm": "RS256", "rsa_bits": 1024}, []string{"rsa_bits", "2048"}},
		{"odd RSA", "keys/new", map[string]any{"algorithm": "RS256", "rsa_bits": 2049}, []string{"rsa_bits", "4096"}},
		{"rsa_bits string", "keys/new", map[string]any{"rsa_bits": "big"}, []string{"rsa_bits", "whole number"}},
		// Bounds between fields and objects.
		{"lead below 2 max-age", "keys/new", map[string]any{"publish_lead": "1m"}, []string{"publish_lead", "2 x jwks_max_age", "jwks_max_age"}},
		{"too many periods published", "keys/new", map[string]any{"rotation_period": "1h", "publish_lead": "5h", "verification_ttl": "6h"}, []string{"rotation_period", "above 10", "at least"}},
		{"overlap below role", "keys/k", map[string]any{"verification_ttl": "30m"}, []string{"verification_ttl", `role "r"`, "max_ttl"}},
		{"role max_ttl above overlap", "roles/r", map[string]any{"max_ttl": "2h"}, []string{"max_ttl", "verification_ttl", "60s"}},
		{"ttl above max_ttl", "roles/r", map[string]any{"ttl": "2h", "max_ttl": "1h"}, []string{"ttl", "max_ttl"}},
		{"max-age breaks lead", "config", map[string]any{"jwks_max_age": "6m"}, []string{"jwks_max_age", "k (publish_lead 600s)"}},
		{"max-age zero", "config", map[string]any{"jwks_max_age": 0}, []string{"jwks_max_age", "1s to 24h"}},
		{"max-age two days", "config", map[string]any{"jwks_max_age": "48h"}, []string{"jwks_max_age", "24h"}},
		{"issuer not a URL", "config", map[string]any{"issuer": "vault"}, []string{"issuer", "http"}},
		{"issuer with query", "config", map[string]any{"issuer": "https://v.example/v1/jwt?x=1"}, []string{"issuer", "query"}},
		{"issuer trailing slash", "config", map[string]any{"issuer": "https://v.example/v1/jwt/"}, []string{"issuer", "slash"}},
		{"bad verifier cidr", "config", map[string]any{"verifier_cidrs": "10.0.0.0/33"}, []string{"verifier_cidrs", "CIDR"}},
		{"bad verifier id", "config", map[string]any{"verifiers": "a b"}, []string{"verifiers"}},
		// Roles.
		{"role without audiences", "roles/new", map[string]any{"key": "k"}, []string{"audiences", "required"}},
		{"role without key", "roles/new", map[string]any{"audiences": "a"}, []string{"key", "required"}},
		{"role on missing ring", "roles/new", map[string]any{"key": "nope", "audiences": "a"}, []string{"key", "nope"}},
		{"reserved static claim", "roles/r", map[string]any{"claims": map[string]any{"iss": "evil"}}, []string{"claims", "iss", "reserved"}},
		{"reserved claim any case", "roles/r", map[string]any{"claims": map[string]any{"Exp": 1}}, []string{"claims", "Exp", "reserved"}},
		{"reserved allowed claim", "roles/r", map[string]any{"allowed_claims": "sub"}, []string{"allowed_claims", "sub", "reserved"}},
		{"claims not an object", "roles/r", map[string]any{"claims": "[1,2]"}, []string{"claims", "object"}},
		{"claims bad JSON", "roles/r", map[string]any{"claims": "{bad"}, []string{"claims", "JSON"}},
		{"claims duplicate name", "roles/r", map[string]any{"claims": `{"a":1,"a":2}`}, []string{"claims", "twice"}},
		{"claims duplicate name after a nested object", "roles/r", map[string]any{"claims": `{"a":{"b":1},"c":1,"c":2}`}, []string{"claims", "twice"}},
		{"claims case variants", "roles/r", map[string]any{"claims": map[string]any{"Tenant": 1, "tenant": 2}}, []string{"claims", "case"}},
		{"bad glob", "roles/r", map[string]any{"allowed_subjects": "a*b"}, []string{"allowed_subjects", "start or the end"}},
		{"bad token type", "roles/r", map[string]any{"token_type": "id+jwt"}, []string{"token_type", "at+jwt"}},
		{"template injection", "roles/r", map[string]any{"subject_template": "{{identity.entity.id}}{{"}, []string{"subject_template"}},
		{"unknown template", "roles/r", map[string]any{"subject_template": "{{identity.entity.secret}}"}, []string{"subject_template"}},
		{"invalid UTF-8", "roles/r", map[string]any{"subject_template": "a\xffb"}, []string{"subject_template", "UTF-8"}},
		{"audiences not strings", "roles/r", map[string]any{"audiences": []any{1}}, []string{"audiences", "string"}},
		// Signing.
		{"sign claims bad JSON", "sign/r", map[string]any{"claims": `{"scope":`}, []string{"claims", "JSON"}},
		{"sign claims not object", "sign/r", map[string]any{"claims": 5}, []string{"claims", "object"}},
		{"sign reserved claim", "sign/r", map[string]any{"claims": map[string]any{"aud": "other"}}, []string{"claims", "aud", "reserved"}},
		{"sign static claim override", "sign/r", map[string]any{"claims": map[string]any{"tier": "platinum"}}, []string{"claims", "tier", "static"}},
		{"sign claim not allowed", "sign/r", map[string]any{"claims": map[string]any{"admin": true}}, []string{"claims", "admin", "allowed_claims"}},
		{"sign audience outside role", "sign/r", map[string]any{"audience": "https://evil.example"}, []string{"audience", "evil"}},
		{"sign subject not allowed", "sign/r", map[string]any{"subject": "root"}, []string{"subject", "allowed_subjects"}},
		{"sign ttl above max", "sign/r", map[string]any{"ttl": "2h"}, []string{"ttl", "max_ttl", "3600"}},
		{"sign too many claims", "sign/r", map[string]any{"claims": manyClaims(65)}, []string{"claims", "64"}},
		{"sign deep claims", "sign/r", map[string]any{"claims": map[string]any{"scope": deep(7)}}, []string{"claims", "deeper"}},
		{"sign huge claims", "sign/r", map[string]any{"claims": map[string]any{"scope": strings.Repeat("x", 9000)}}, []string{"claims", "bytes"}},
		{"sign unknown role", "sign/nope", nil, []string{"role", "nope"}},
		// Operations.
		{"revoke unknown kid", "keys/k/revoke", map[string]any{"kid": "nope"}, []string{"kid", "nope"}},
		{"revoke without kid", "keys/k/revoke", nil, []string{"kid", "required"}},
		{"rollback with no previous key", "keys/k/rollback", nil, []string{"rollback"}},
		{"rotate missing ring", "keys/nope/rotate", nil, []string{"name", "nope"}},
		{"force on key write", "keys/k", map[string]any{"force": true}, []string{"force", "delete"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.setupRing("k", "ES256", nil)
			e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "claims": map[string]any{"tier": "gold"}, "allowed_claims": "scope", "max_ttl": "1h"})
			before := dump(t, e.storage)
			resp, err := e.write(tc.path, tc.data)
			expect400(t, resp, err, tc.fragments...)
			sameStorage(t, before, dump(t, e.storage))
		})
	}
	// An operation the plugin does not have is Vault's 404 for a path no
	// backend serves: each operation is a path of its own.
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	before := dump(t, e.storage)
	if resp, err := e.write("keys/k/explode", nil); err != logical.ErrUnsupportedPath || resp != nil {
		t.Fatalf("keys/k/explode: want an unsupported path, got err=%v resp=%s", err, respErr(resp))
	}
	sameStorage(t, before, dump(t, e.storage))
}

func manyClaims(n int) map[string]any {
	m := map[string]any{}
	for i := 0; i < n; i++ {
		m[strings.Repeat("c", i+1)] = i
	}
	return m
}

func deep(n int) any {
	var v any = "leaf"
	for i := 0; i < n; i++ {
		v = map[string]any{"x": v}
	}
	return v
}

// Every bound of checkValue holds exactly: a value at the bound passes, one
// past it is refused naming the field (strings and list entries of 4096
// bytes, lists of 256 entries, whole numbers up to 2^53 sent as JSON
// floats, floats within float64), and a list sent as JSON text is decoded,
// not refused.
func TestCheckValueBoundsExactly(t *testing.T) {
	t.Parallel()
	at, past := strings.Repeat("a", maxStringLen), strings.Repeat("a", maxStringLen+1)
	list := func(n int, entry string) []any {
		out := make([]any, n)
		for i := range out {
			out[i] = entry
		}
		return out
	}
	cases := []struct {
		name string
		t    framework.FieldType
		raw  any
		ok   bool
	}{
		{"string at the bound", framework.TypeString, at, true},
		{"string past the bound", framework.TypeString, past, false},
		{"list at the bound", framework.TypeCommaStringSlice, list(maxListLen, "x"), true},
		{"list past the bound", framework.TypeCommaStringSlice, list(maxListLen+1, "x"), false},
		{"entry at the bound", framework.TypeCommaStringSlice, list(1, at), true},
		{"entry past the bound", framework.TypeCommaStringSlice, list(1, past), false},
		{"2^53 as a float", framework.TypeInt, float64(1 << 53), true},
		{"past 2^53 as a float", framework.TypeInt, float64(1<<53) * 2, false},
		{"objects as JSON text", framework.TypeSlice, `[{"a":1}]`, true},
		{"a float as a JSON number", framework.TypeFloat, json.Number("0.5"), true},
		{"a float out of range", framework.TypeFloat, json.Number("1e400"), false},
	}
	for _, c := range cases {
		_, err := checkValue("field", c.t, c.raw)
		if (err == nil) != c.ok {
			t.Errorf("%s: accepted %v, want %v (%v)", c.name, err == nil, c.ok, err)
		}
		if err != nil && !strings.Contains(err.Error(), "field") {
			t.Errorf("%s: the refusal does not name the field: %v", c.name, err)
		}
	}
}
