package jwtrotor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Every algorithm and RSA size signs tokens that two independent libraries
// verify against the served JWKS.
func TestSignEveryAlgorithm(t *testing.T) {
	t.Parallel()
	cases := []struct {
		alg  string
		bits int
	}{
		{"RS256", 2048}, {"RS384", 3072}, {"RS512", 4096},
		{"PS256", 2048}, {"PS384", 2048}, {"PS512", 2048},
		{"ES256", 0}, {"ES384", 0}, {"ES512", 0}, {"EdDSA", 0},
	}
	for _, tc := range cases {
		t.Run(tc.alg, func(t *testing.T) {
			e := newEnv(t)
			extra := map[string]any{}
			if tc.bits != 0 {
				extra["rsa_bits"] = tc.bits
			}
			e.setupRing("k", tc.alg, extra)
			e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "scope"})
			resp := e.mustWrite("sign/r", map[string]any{"claims": `{"scope":"read"}`})
			token := resp.Data["token"].(string)
			_, body, _ := e.jwks("jwks")

			claims, err := verifyJose(t, token, body, e.clock.Now())
			if err != nil {
				t.Fatalf("go-jose rejects the token: %v", err)
			}
			if err := verifyJWTv5(t, token, body, e.clock.Now(), "api"); err != nil {
				t.Fatalf("golang-jwt rejects the token: %v", err)
			}
			if claims["iss"] != "https://vault.example.com/v1/jwt" || claims["sub"] != e.entity.ID || claims["aud"] != "api" || claims["scope"] != "read" {
				t.Fatalf("claims: %v", claims)
			}
			hdr := header(t, token)
			if hdr["alg"] != tc.alg || hdr["kid"] != resp.Data["kid"] || hdr["typ"] != "JWT" {
				t.Fatalf("header %v", hdr)
			}
			for _, h := range []string{"jku", "x5u", "jwk", "x5c", "crit"} {
				if _, ok := hdr[h]; ok {
					t.Fatalf("header carries %s", h)
				}
			}
			if tc.bits != 0 {
				var set struct {
					Keys []struct {
						N string `json:"n"`
					} `json:"keys"`
				}
				_ = json.Unmarshal(body, &set)
				n, _ := base64.RawURLEncoding.DecodeString(set.Keys[0].N)
				if len(n)*8 != tc.bits {
					t.Fatalf("modulus is %d bits, want %d", len(n)*8, tc.bits)
				}
			}
		})
	}
}

func header(t *testing.T, token string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	h := map[string]any{}
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestSignClaimsAndPolicy: a token carries the role's static claims, the
// caller's allowed claims, the chosen audience and subject, iat/nbf/exp from
// Vault's clock and the role's typ; defaults are the role's audiences and
// ttl; jti is unique.
func TestSignClaimsAndPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{
		"key": "k", "audiences": []any{"a1", "a2"}, "ttl": "5m", "max_ttl": "30m",
		"claims": map[string]any{"tenant": "acme"}, "allowed_claims": []any{"scope"},
		"allowed_subjects": []any{"svc-*"}, "token_type": "at+jwt",
	})
	now := e.clock.Now()
	resp := e.mustWrite("sign/r", map[string]any{"claims": map[string]any{"scope": "x"}, "audience": "a2", "subject": "svc-billing", "ttl": 600})
	tok := resp.Data["token"].(string)
	_, body, _ := e.jwks("jwks")
	claims, err := verifyJose(t, tok, body, now)
	if err != nil {
		t.Fatal(err)
	}
	if claims["aud"] != "a2" || claims["sub"] != "svc-billing" || claims["tenant"] != "acme" || claims["scope"] != "x" {
		t.Fatalf("claims %v", claims)
	}
	if int64(claims["iat"].(float64)) != now.Unix() || int64(claims["nbf"].(float64)) != now.Unix() || int64(claims["exp"].(float64)) != now.Unix()+600 {
		t.Fatalf("times %v", claims)
	}
	if resp.Data["issued_at"] != now.Unix() || resp.Data["expires_at"] != now.Unix()+600 {
		t.Fatalf("response times %v", resp.Data)
	}
	if header(t, tok)["typ"] != "at+jwt" {
		t.Fatalf("typ %v", header(t, tok))
	}
	// Default audience is all of the role's; default ttl is the role's.
	resp = e.mustWrite("sign/r", map[string]any{})
	claims, err = verifyJose(t, resp.Data["token"].(string), body, now)
	if err != nil {
		t.Fatal(err)
	}
	if auds, ok := claims["aud"].([]any); !ok || len(auds) != 2 {
		t.Fatalf("aud %v", claims["aud"])
	}
	if int64(claims["exp"].(float64))-now.Unix() != 300 {
		t.Fatalf("default ttl: %v", claims)
	}
	// A claim that differs from a static claim only in case is refused,
	// naming the role.
	r, err := e.write("sign/r", map[string]any{"claims": map[string]any{"Tenant": "x"}})
	expect400(t, r, err, "claims", `"Tenant" is the static claim "tenant" of role "r"`)
	// jti is unique.
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		j := e.mustWrite("sign/r", nil).Data["jti"].(string)
		if seen[j] {
			t.Fatalf("jti %s repeated", j)
		}
		seen[j] = true
	}
}

// TestSignSubjectTemplates: sub is the role's template rendered for the
// caller's entity, the static subject itself, or the subject the caller
// chose among allowed_subjects; a template that needs an entity is a 400
// for a caller without one.
func TestSignSubjectTemplates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "EdDSA", nil)
	_, body, _ := e.jwks("jwks")
	sub := func(role string, data map[string]any) any {
		t.Helper()
		resp := e.mustWrite("sign/"+role, data)
		claims, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return claims["sub"]
	}
	e.mustWrite("roles/name", map[string]any{"key": "k", "audiences": "api", "subject_template": "team/{{identity.entity.metadata.team}}/{{identity.entity.name}}"})
	if got := sub("name", nil); got != "team/payments/payments-api" {
		t.Fatalf("templated sub %v, want team/payments/payments-api", got)
	}
	e.mustWrite("roles/default", map[string]any{"key": "k", "audiences": "api"})
	if got := sub("default", nil); got != e.entity.ID {
		t.Fatalf("default template: sub %v, want the entity id %s", got, e.entity.ID)
	}
	e.mustWrite("roles/static", map[string]any{"key": "k", "audiences": "api", "subject_template": "batch-job"})
	e.mustWrite("roles/chooser", map[string]any{"key": "k", "audiences": "api", "allowed_subjects": "job-*"})
	if got := sub("chooser", map[string]any{"subject": "job-7"}); got != "job-7" {
		t.Fatalf("caller-chosen sub %v, want job-7", got)
	}
	// No entity: the default template is a 400, a static one works.
	e.entity.ID = ""
	resp, err := e.write("sign/default", nil)
	expect400(t, resp, err, "subject", "no Vault entity")
	if got := sub("static", nil); got != "batch-job" {
		t.Fatalf("static sub %v, want batch-job", got)
	}
	if got := sub("chooser", map[string]any{"subject": "job-8"}); got != "job-8" {
		t.Fatalf("caller-chosen sub without an entity %v, want job-8", got)
	}
}

// TestSignBatch: each batch item gets a verifying token or its own error
// naming the field; more than maxBatch items is a 400.
func TestSignBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "n", "ttl": "5m", "max_ttl": "10m"})
	items := []any{
		map[string]any{"claims": map[string]any{"n": 1}},
		map[string]any{"ttl": "1h"},
		map[string]any{"claims": `{"n":3}`, "ttl": 60},
		"not an object",
		map[string]any{"bogus": true},
	}
	resp := e.mustWrite("sign/r", map[string]any{"batch_input": items})
	results := resp.Data["batch_results"].([]map[string]any)
	if len(results) != 5 {
		t.Fatalf("%d results", len(results))
	}
	_, body, _ := e.jwks("jwks")
	for _, i := range []int{0, 2} {
		if _, err := verifyJose(t, results[i]["token"].(string), body, e.clock.Now()); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	for i, frag := range map[int]string{1: "ttl", 3: "object", 4: "bogus"} {
		msg, _ := results[i]["error"].(string)
		if !strings.Contains(msg, frag) || results[i]["token"] != nil {
			t.Fatalf("item %d: want an error naming %s, got %v", i, frag, results[i])
		}
	}
	big := make([]any, maxBatch+1)
	for i := range big {
		big[i] = map[string]any{}
	}
	r, err := e.write("sign/r", map[string]any{"batch_input": big})
	expect400(t, r, err, "batch_input", "100")
}

// iat, nbf and exp come from Vault's clock, never from the caller.
func TestSignTimesFromVaultClock(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "x"})
	e.clock.Advance(90 * time.Minute)
	for _, c := range []string{"iat", "nbf", "exp", "IAT", "jti", "iss", "sub", "aud"} {
		resp, err := e.write("sign/r", map[string]any{"claims": map[string]any{c: 1}})
		expect400(t, resp, err, "claims", c, "reserved")
	}
	resp := e.mustWrite("sign/r", nil)
	if resp.Data["issued_at"] != e.clock.Now().Unix() {
		t.Fatalf("issued_at %v, clock %d", resp.Data["issued_at"], e.clock.Now().Unix())
	}
}

// keyLeavingIn is a ring k whose active key was stored (by other means than
// the API) to leave the JWKS left seconds from now, and a role r with a ttl
// of 15m, on a restarted backend; it returns the env and now.
func keyLeavingIn(t *testing.T, left int64) (*testEnv, int64) {
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "15m"})
	r := e.ring("k")
	now := e.clock.Now().Unix()
	r.Keys[activeIndex(r.Keys, now)].RemoveAt = now + left
	if err := putJSON(context.Background(), e.storage, ringPrefix+"k", r); err != nil {
		t.Fatal(err)
	}
	return e.restart(), now
}

// Even for a ring whose stored overlap is shorter than the role's max_ttl
// (an entry written by other means), no token outlives its key.
func TestSignNeverOutlivesKey(t *testing.T) {
	t.Parallel()
	e, now := keyLeavingIn(t, 120)
	resp := e.mustWrite("sign/r", nil)
	if resp.Data["expires_at"].(int64) != now+120-60 || len(resp.Warnings) == 0 {
		t.Fatalf("expires_at %v, key leaves at %d; warnings %v", resp.Data["expires_at"], now+120, resp.Warnings)
	}
	// The shortening is a warning of the response, not a field of its data;
	// a batch item carries it in its own result.
	if _, inData := resp.Data["warning"]; inData || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "expires 60s before its key leaves") {
		t.Fatalf("data %v, warnings %v", resp.Data, resp.Warnings)
	}
	batch := e.mustWrite("sign/r", map[string]any{"batch_input": []any{map[string]any{}}})
	item := batch.Data["batch_results"].([]map[string]any)[0]
	if item["expires_at"] != resp.Data["expires_at"] || item["warning"] != resp.Warnings[0] || len(batch.Warnings) != 0 {
		t.Fatalf("batch item %v, batch warnings %v", item, batch.Warnings)
	}
}

// Templates that use only the entity id render without asking Vault for the
// entity, in any spacing, beside static text.
func TestRenderEntityID(t *testing.T) {
	t.Parallel()
	for tmpl, want := range map[string]string{
		"{{identity.entity.id}}":                         "E",
		"svc/{{ identity.entity.id }}/x":                 "svc/E/x",
		"{{identity.entity.id}}-{{identity.entity.id }}": "E-E",
	} {
		if got, ok := renderEntityID(tmpl, "E"); !ok || got != want {
			t.Errorf("%q: got %q %v, want %q", tmpl, got, ok, want)
		}
	}
	if _, ok := renderEntityID("{{identity.entity.name}}", "E"); ok {
		t.Error("a template using the entity name must ask Vault for the entity")
	}
}

// revokeOnPrivateGet revokes a ring's active key just before each read of
// a private half (its own reads aside), at most limit times: writes that
// keep deleting the signing key's private half under a sign.
type revokeOnPrivateGet struct {
	logical.Storage
	mu     sync.Mutex
	e      *testEnv
	limit  int
	fired  int
	inside bool
}

func (s *revokeOnPrivateGet) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.Lock()
	fire := strings.HasPrefix(key, privatePrefix) && s.e != nil && !s.inside && s.fired < s.limit
	if fire {
		s.fired++
		s.inside = true
	}
	s.mu.Unlock()
	if fire {
		r := s.e.ring("k")
		a, _ := activeAndPending(r.Keys, s.e.clock.Now().Unix())
		s.e.mustWrite("keys/k/revoke", map[string]any{"kid": r.Keys[a].KID})
		for _, k := range s.e.ring("k").Keys {
			s.e.b.dropSigner(k.storeID())
		}
		s.mu.Lock()
		s.inside = false
		s.mu.Unlock()
	}
	return s.Storage.Get(ctx, key)
}

// A sign whose key's private half is deleted under it by a write retries
// from the state that write left, maxSignAttempts times in all, then fails.
func TestSignFollowsDeletedKeysAtMostMaxAttempts(t *testing.T) {
	t.Parallel()
	s := &revokeOnPrivateGet{Storage: &logical.InmemStorage{}, limit: 2 * maxSignAttempts}
	e := newEnvOn(t, s, &fakeClock{now: testStart})
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	for _, k := range e.ring("k").Keys {
		e.b.dropSigner(k.storeID())
	}
	s.mu.Lock()
	s.e = e
	s.mu.Unlock()
	resp, err := e.write("sign/r", nil)
	s.mu.Lock()
	fired := s.fired
	s.mu.Unlock()
	if !errors.Is(err, errPrivateGone) || fired != maxSignAttempts {
		t.Fatalf("after %d keys deleted under it the sign answered err=%v resp=%s; want the missing private half after %d", fired, err, respErr(resp), maxSignAttempts)
	}
}

// A token whose lifetime needs no shortening comes with no warning.
func TestSignWithoutWarnings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	resp := e.mustWrite("sign/r", nil)
	if len(resp.Warnings) != 0 {
		t.Fatalf("warnings %q", resp.Warnings)
	}
}

// A caller claim outside allowed_claims is refused, saying that callers may
// add none when the list is empty and naming the list otherwise.
func TestSignRefusesClaimsOutsideAllowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/none", map[string]any{"key": "k", "audiences": "api"})
	e.mustWrite("roles/some", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "scope,tenant"})
	r, err := e.write("sign/none", map[string]any{"claims": map[string]any{"team": "x"}})
	expect400(t, r, err, "claims", `"team" is not allowed`, "allowed_claims is empty")
	r, err = e.write("sign/some", map[string]any{"claims": map[string]any{"team": "x"}})
	expect400(t, r, err, "claims", `"team" is not in the role's allowed_claims (scope, tenant)`)
}

// A token that expires exactly clockSkewSeconds before its key leaves the
// JWKS keeps its ttl, with no warning; one second longer is shortened to
// that, and the warning says to how long.
func TestSignShortensOnlyPastTheKeysRemoval(t *testing.T) {
	t.Parallel()
	e, now := keyLeavingIn(t, 120)
	resp := e.mustWrite("sign/r", map[string]any{"ttl": 120 - clockSkewSeconds})
	if exp := resp.Data["expires_at"].(int64); exp != now+120-clockSkewSeconds || len(resp.Warnings) != 0 {
		t.Fatalf("a token ending %ds before its key leaves: expires_at %d (now %d), warnings %q", clockSkewSeconds, exp, now, resp.Warnings)
	}
	resp = e.mustWrite("sign/r", map[string]any{"ttl": 120 - clockSkewSeconds + 1})
	if exp := resp.Data["expires_at"].(int64); exp != now+120-clockSkewSeconds || len(resp.Warnings) != 1 ||
		!strings.HasPrefix(resp.Warnings[0], fmt.Sprintf("ttl shortened to %ds ", 120-clockSkewSeconds)) {
		t.Fatalf("a token one second longer: expires_at %d (now %d), warnings %q", exp, now, resp.Warnings)
	}
}

// A key that leaves the JWKS within clockSkewSeconds signs nothing: the
// token could not expire before it leaves. One second more signs a token
// of one second.
func TestSignRefusedWhenTheKeyLeavesTooSoon(t *testing.T) {
	t.Parallel()
	for _, left := range []int64{clockSkewSeconds, clockSkewSeconds + 1} {
		e, now := keyLeavingIn(t, left)
		resp, err := e.write("sign/r", nil)
		if left == clockSkewSeconds {
			if err == nil || !strings.Contains(err.Error(), "leaves the JWKS too soon to sign") {
				t.Fatalf("a key leaving in %ds signed: err=%v resp=%s", left, err, respErr(resp))
			}
			continue
		}
		if err != nil || resp.IsError() || resp.Data["expires_at"].(int64) != now+1 {
			t.Fatalf("a key leaving in %ds: err=%v resp=%s, want a token of 1s", left, err, respErr(resp))
		}
	}
}

// A sign before a new ring's first key activates is refused with the time
// that key signs from.
func TestSignBeforeTheFirstKeySaysWhen(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
	e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "20m", "verification_ttl": "2h"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	first := e.ring("k").Keys[0].ActivateAt
	r, err := e.write("sign/r", nil)
	expect400(t, r, err, "no active key yet", "signs from "+fmtTime(first))
}

// A standby whose invalidations lag signs with the key the active node
// promoted, not a 500: the private half of the key its cached ring names
// active is gone, so it reads the ring again from storage.
func TestSignOnAStandbyBehindItsInvalidations(t *testing.T) {
	t.Parallel()
	active, standby := twoNodes(t)
	active.setupRing("k", "ES256", nil)
	active.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	before := standby.read("keys/k").Data["active_kid"].(string)
	active.mustWrite("keys/k/rotate", map[string]any{"force": true})
	active.mustWrite("keys/k/rotate", map[string]any{"force": true})
	resp, err := standby.write("sign/r", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("sign on the standby: %v %s", err, respErr(resp))
	}
	now := active.read("keys/k").Data["active_kid"].(string)
	if kid := resp.Data["kid"]; kid != now || kid == before {
		t.Fatalf("the standby signed with %v; the active key is %s (it was %s)", kid, now, before)
	}
}
