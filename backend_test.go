package jwtrotor

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Invalidate drops exactly what another node changed, with the writers'
// prefixes, so the next request sees it.
func TestInvalidate(t *testing.T) {
	t.Parallel()
	active, standby := twoNodes(t)
	active.setupRing("k", "ES256", nil)
	before := kidsOf(t, standby.get("jwks", nil).Data[logical.HTTPRawBody].([]byte))
	active.mustWrite("keys/k/rotate", map[string]any{"revoke_active": true})
	if fmt.Sprint(kidsOf(t, standby.get("jwks", nil).Data[logical.HTTPRawBody].([]byte))) != fmt.Sprint(before) {
		t.Fatal("the standby changed without an invalidation (the test would prove nothing)")
	}
	standby.b.invalidate(context.Background(), ringPrefix+"k")
	after := kidsOf(t, standby.get("jwks", nil).Data[logical.HTTPRawBody].([]byte))
	want := kidsOf(t, active.get("jwks", nil).Data[logical.HTTPRawBody].([]byte))
	if fmt.Sprint(after) != fmt.Sprint(want) {
		t.Fatalf("after invalidation the standby serves %v, the active node %v", after, want)
	}
	active.mustWrite("config", map[string]any{"jwks_max_age": 45})
	standby.b.invalidate(context.Background(), configPath)
	if standby.read("config").Data["jwks_max_age"] != int64(45) {
		t.Fatal("config not reloaded")
	}
	active.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	standby.b.invalidate(context.Background(), rolePrefix+"r")
	if standby.read("roles/r") == nil {
		t.Fatal("role not reloaded")
	}
}
