package jwtrotor

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/testhelpers/schema"
	"github.com/hashicorp/vault/sdk/logical"
)

// Every operation of every path declares a summary and its responses, which
// Vault's OpenAPI document, generated clients and vault path-help show.
func TestEveryOperationIsDocumented(t *testing.T) {
	t.Parallel()
	b := newBackend(systemClock{start: time.Now()})
	ops := 0
	for _, p := range b.Paths {
		if p.HelpSynopsis == "" {
			t.Errorf("%s: no HelpSynopsis", p.Pattern)
		}
		for op, h := range p.Operations {
			ops++
			props := h.Properties()
			if props.Summary == "" {
				t.Errorf("%s %s: no Summary", p.Pattern, op)
			}
			if len(props.Responses) == 0 {
				t.Errorf("%s %s: no Responses", p.Pattern, op)
			}
			if props.DisplayAttrs == nil || props.DisplayAttrs.OperationVerb == "" {
				t.Errorf("%s %s: no OperationVerb", p.Pattern, op)
			}
		}
	}
	if ops < 25 {
		t.Fatalf("found only %d operations", ops)
	}
}

// Every response matches the schema its operation declares, strictly: no
// field missing that it marks required, none it does not declare.
func TestResponsesMatchTheirSchemas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	checked := map[string]bool{}
	call := func(op logical.Operation, path string, data map[string]any) *logical.Response {
		t.Helper()
		resp, err := e.do(op, path, data)
		if err != nil || (resp != nil && resp.IsError()) {
			t.Fatalf("%s %s: err=%v resp=%s", op, path, err, respErr(resp))
		}
		p := e.b.Route(path)
		if p == nil {
			t.Fatalf("%s: no route", path)
		}
		// Vault resolves create or update with the existence check; the
		// schema is the same for both.
		schemaOp := op
		if _, ok := p.Operations[op]; !ok && op == logical.UpdateOperation {
			schemaOp = logical.CreateOperation
		}
		schema.ValidateResponse(t, schema.GetResponseSchema(t, p, schemaOp), resp, true)
		checked[strings.Trim(p.Pattern, "^$")+" "+string(schemaOp)] = true
		return resp
	}
	var read, write, del, list logical.Operation = logical.ReadOperation, logical.UpdateOperation, logical.DeleteOperation, logical.ListOperation
	call(write, "config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60, "verifiers": "gateway"})
	call(read, "config", nil)
	call(write, "keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	call(write, "keys/k", map[string]any{"verification_ttl": "3h"})
	call(read, "keys/k", nil)
	call(list, "keys/", nil)
	call(write, "keys/k/rotate", map[string]any{"expected_active_kid": "none"})
	call(write, "keys/k/rotate", map[string]any{"force": true})
	call(write, "roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "scope"})
	call(write, "roles/r", map[string]any{"ttl": "10m", "allow_token_read": true})
	call(read, "roles/r", nil)
	call(list, "roles/", nil)
	call(write, "sign/r", map[string]any{"claims": map[string]any{"scope": "x"}})
	call(write, "sign/r", map[string]any{"batch_input": []any{map[string]any{}, map[string]any{"ttl": "soon"}}})
	call(read, "token/r", nil)
	call(read, "token/r", map[string]any{"ttl": "5m", "audience": "api"})
	e.clock.Advance(61 * time.Minute)
	call(write, "keys/k/rollback", nil)
	pending := call(read, "keys/k", nil).Data["pending_kid"].(string)
	call(write, "keys/k/revoke", map[string]any{"kid": pending})
	call(write, "keys/k/revoke", map[string]any{"kid": pending})
	for _, path := range []string{"jwks", "jwks/k", ".well-known/jwks.json", ".well-known/openid-configuration"} {
		call(read, path, nil)
		call(logical.HeaderOperation, path, nil)
	}
	call(read, "verifiers", nil)
	call(read, "metrics", nil)
	call(read, "metrics", map[string]any{"format": "prometheus"})
	call(read, "clock", nil)
	e.clock.Step(time.Hour)
	call(read, "clock", nil)
	call(write, "clock/accept", nil)
	// Adopting an issuer: the wrapping key, an import, a trusted key, and
	// its early removal.
	call(read, "wrapping_key", nil)
	call(write, "keys/adopted/import", e.importData(newTestKey(t, "P-256"), map[string]any{"algorithm": "ES256", "kid": "legacy-1"}))
	call(write, "keys/adopted/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "Ed25519").Public(), "legacy-0", "EdDSA", nil), "expires_at": e.clock.Now().Unix() + 3600})
	call(read, "keys/adopted", nil)
	call(read, "snapshot/adopted", nil)
	call(write, "keys/adopted/revoke", map[string]any{"kid": "legacy-0"})
	// Publishers of both types; a read never answers a credential.
	call(write, "publishers/aws", s3Publisher(map[string]any{"session_token": testSessionToken, "ring": "k", "public_url": "https://i.example/v1/jwt/"}))
	call(write, "publishers/aws", map[string]any{"required": true})
	call(write, "publishers/dav", davPublisher(nil))
	call(read, "publishers/aws", nil)
	call(read, "publishers/dav", nil)
	call(list, "publishers/", nil)
	call(del, "publishers/aws", nil)
	call(del, "roles/r", nil)
	call(write, "keys/gone", map[string]any{"algorithm": "EdDSA"})
	call(del, "keys/gone", map[string]any{"force": true})
	call(del, "keys/k", nil)

	b := newBackend(systemClock{start: time.Now()})
	for _, p := range b.Paths {
		for op := range p.Operations {
			if op == logical.CreateOperation {
				continue // the same handler and schema as update
			}
			if !checked[strings.Trim(p.Pattern, "^$")+" "+string(op)] {
				t.Errorf("%s %s: no response was checked against its schema", p.Pattern, op)
			}
		}
	}
}
