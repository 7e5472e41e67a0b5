package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of role policy (path_roles.go) at its limits: every limit admits
// its own value and refuses the next, with a message naming the field.

// limitCase is one value at a limit and one just past it.
type limitCase struct {
	name     string
	at, past map[string]any
	field    string
}

// claimsOfSize returns claims whose JSON encoding is exactly n bytes.
func claimsOfSize(t *testing.T, n int) map[string]any {
	t.Helper()
	m := map[string]any{"scope": ""}
	b, _ := json.Marshal(m)
	m["scope"] = strings.Repeat("x", n-len(b))
	if b, _ := json.Marshal(m); len(b) != n {
		t.Fatalf("set-up: claims of %d bytes, want %d", len(b), n)
	}
	return m
}

// nested is a value nested depth lists deep (depth counts the lists).
func nested(depth int) any {
	var v any = "leaf"
	for i := 0; i < depth; i++ {
		v = []any{v}
	}
	return v
}

// TestRoleLimitsAtTheBoundary: each limit of a role accepts its own value
// and refuses one more, naming the field; nothing refused is stored.
func TestRoleLimitsAtTheBoundary(t *testing.T) {
	t.Parallel()
	many := func(n int) map[string]any {
		m := map[string]any{}
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("c%02d", i)] = i
		}
		return m
	}
	cases := []limitCase{
		{name: "audiences", field: "audiences",
			at:   map[string]any{"audiences": slices.Repeat([]any{"aud"}, maxAudiences)},
			past: map[string]any{"audiences": slices.Repeat([]any{"aud"}, maxAudiences+1)}},
		{name: "audience length", field: "audiences",
			at:   map[string]any{"audiences": []any{strings.Repeat("a", maxAudienceLen)}},
			past: map[string]any{"audiences": []any{strings.Repeat("a", maxAudienceLen+1)}}},
		{name: "ttl", field: "ttl",
			at:   map[string]any{"ttl": 1, "max_ttl": 1},
			past: map[string]any{"ttl": 0, "max_ttl": 1}},
		{name: "max_ttl", field: "max_ttl",
			at:   map[string]any{"ttl": 1, "max_ttl": 1},
			past: map[string]any{"ttl": 1, "max_ttl": 0}},
		{name: "ttl against max_ttl", field: "ttl",
			at:   map[string]any{"ttl": 600, "max_ttl": 600},
			past: map[string]any{"ttl": 601, "max_ttl": 600}},
		{name: "max_ttl against the ring's overlap", field: "max_ttl",
			at:   map[string]any{"ttl": 60, "max_ttl": 7200 - clockSkewSeconds},
			past: map[string]any{"ttl": 60, "max_ttl": 7200 - clockSkewSeconds + 1}},
		{name: "subject_template length", field: "subject_template",
			at:   map[string]any{"subject_template": strings.Repeat("s", maxTemplateLen)},
			past: map[string]any{"subject_template": strings.Repeat("s", maxTemplateLen+1)}},
		{name: "static claims", field: "claims",
			at:   map[string]any{"claims": many(maxClaims)},
			past: map[string]any{"claims": many(maxClaims + 1)}},
		{name: "static claims bytes", field: "claims",
			at:   map[string]any{"claims": claimsOfSize(t, maxClaimsBytes)},
			past: map[string]any{"claims": claimsOfSize(t, maxClaimsBytes+1)}},
		{name: "static claims depth", field: "claims",
			at:   map[string]any{"claims": map[string]any{"x": nested(maxClaimsDepth)}},
			past: map[string]any{"claims": map[string]any{"x": nested(maxClaimsDepth + 1)}}},
		{name: "claim name length", field: "allowed_claims",
			at:   map[string]any{"allowed_claims": []any{strings.Repeat("n", maxClaimNameLen)}},
			past: map[string]any{"allowed_claims": []any{strings.Repeat("n", maxClaimNameLen+1)}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
			base := func(extra map[string]any) map[string]any {
				d := map[string]any{"key": "k", "audiences": "api"}
				for k, v := range extra {
					d[k] = v
				}
				return d
			}
			before := dump(t, e.storage)
			resp, err := e.write("roles/past", base(c.past))
			expect400(t, resp, err, c.field+":")
			sameStorage(t, before, dump(t, e.storage))
			e.mustWrite("roles/at", base(c.at))
		})
	}
}

// TestSignLimitsAtTheBoundary: each limit of a sign request accepts its own
// value and refuses one more, naming the field.
func TestSignLimitsAtTheBoundary(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": 60, "max_ttl": 600, "allowed_subjects": "*", "allowed_claims": "scope"})
	for _, c := range []limitCase{
		{name: "ttl", field: "ttl", at: map[string]any{"ttl": 1}, past: map[string]any{"ttl": 0}},
		{name: "ttl against max_ttl", field: "ttl", at: map[string]any{"ttl": 600}, past: map[string]any{"ttl": 601}},
		{name: "subject length", field: "subject",
			at:   map[string]any{"subject": strings.Repeat("s", maxSubjectLen)},
			past: map[string]any{"subject": strings.Repeat("s", maxSubjectLen+1)}},
		{name: "claims bytes", field: "claims",
			at:   map[string]any{"claims": claimsOfSize(t, maxClaimsBytes)},
			past: map[string]any{"claims": claimsOfSize(t, maxClaimsBytes+1)}},
		{name: "claims depth", field: "claims",
			at:   map[string]any{"claims": map[string]any{"scope": nested(maxClaimsDepth)}},
			past: map[string]any{"claims": map[string]any{"scope": nested(maxClaimsDepth + 1)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, err := e.write("sign/r", c.past)
			expect400(t, resp, err, c.field+":")
			resp = e.mustWrite("sign/r", c.at)
			if resp.Data["token"] == nil {
				t.Fatalf("no token for %v", c.at)
			}
		})
	}
	// batch_input: maxBatch items, each a token; one more is a 400.
	batch := make([]any, maxBatch)
	for i := range batch {
		batch[i] = map[string]any{}
	}
	resp := e.mustWrite("sign/r", map[string]any{"batch_input": batch})
	if n := len(resp.Data["batch_results"].([]map[string]any)); n != maxBatch {
		t.Fatalf("a batch of %d items: %d results", maxBatch, n)
	}
	r, err := e.write("sign/r", map[string]any{"batch_input": append(batch, map[string]any{})})
	expect400(t, r, err, "batch_input:")
}

// A role reads back exactly what was written; a create starts from the
// defaults, an update changes only what it names; a role needs its ring,
// named in lower case, and an overlap that covers its longest token.
func TestRoleReadsBackWhatWasWritten(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	r, err := e.write("roles/r", map[string]any{"key": "nope", "audiences": "api"})
	expect400(t, r, err, "key", "no key ring")
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api,admin", "claims": map[string]any{"team": "x"}, "allowed_claims": "scope"})
	want := map[string]any{
		"key": "k", "audiences": []string{"api", "admin"}, "ttl": defaultRoleTTLSeconds, "max_ttl": defaultRoleMaxTTLSeconds,
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

// Vault asks whether a role exists to tell a create from an update (and
// which policy capability a write needs): an existing role exists, another
// name does not.
func TestRoleExistenceCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	for name, want := range map[string]bool{"r": true, "other": false} {
		found, exists, err := e.b.HandleExistenceCheck(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "roles/" + name, Storage: e.storage})
		if err != nil || !found || exists != want {
			t.Fatalf("roles/%s: found %v exists %v err %v, want exists %v", name, found, exists, err, want)
		}
	}
}

// A list of roles/ names every role, sorted.
func TestRoleList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	for _, name := range []string{"web", "api"} {
		e.mustWrite("roles/"+name, map[string]any{"key": "k", "audiences": "api"})
	}
	resp, err := e.do(logical.ListOperation, "roles/", nil)
	if err != nil || resp == nil {
		t.Fatalf("list: %v %v", resp, err)
	}
	if got := resp.Data["keys"]; !reflect.DeepEqual(got, []string{"api", "web"}) {
		t.Fatalf("listed %v, want [api web]", got)
	}
}

// A max_ttl too long for the ring is refused with the longest it may be:
// the ring's verification_ttl less the clock skew.
func TestRoleMaxTTLRefusalSaysTheLongestAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	r, err := e.write("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": 60, "max_ttl": "3h"})
	expect400(t, r, err, "max_ttl", fmt.Sprintf("lower max_ttl to at most %ds", 7200-clockSkewSeconds))
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": 60, "max_ttl": 7200 - clockSkewSeconds})
}
