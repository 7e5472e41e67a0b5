package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// tokenEnv is a mount whose role r may mint on a read: ES256 ring k, two
// audiences, a static claim, an allowed claim and allowed subjects (which a
// read cannot use, so they must change nothing).
func tokenEnv(t *testing.T) *testEnv {
	t.Helper()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{
		"key": "k", "audiences": "api,api2", "claims": map[string]any{"tier": "gold"},
		"allowed_claims": "scope", "allowed_subjects": "svc-*", "ttl": "15m", "max_ttl": "1h",
		"token_type": "at+jwt", "allow_token_read": true,
	})
	return e
}

// readToken reads token/<role> with query parameters as Vault passes them
// (a string, or a list of strings for a repeated parameter).
func (e *testEnv) readToken(role string, query map[string]any) (*logical.Response, error) {
	return e.do(logical.ReadOperation, "token/"+role, query)
}

// signedCount is tokens_signed_total for ring and kid, from the metrics read.
func (e *testEnv) signedCount(ring, kid string) float64 {
	e.t.Helper()
	series, _ := e.read("metrics").Data["jwt_rotor_tokens_signed_total"].([]map[string]any)
	for _, s := range series {
		l := s["labels"].(map[string]string)
		if l["ring"] == ring && l["kid"] == kid {
			return s["value"].(float64)
		}
	}
	return 0
}

// The read mints exactly what sign with no fields mints: the same response
// fields in the data envelope, the same header, the same claims but for the
// times and jti, the same kid, the same lifetime, one count in the same
// metric each, and no storage write (which is what lets any node answer it).
func TestTokenReadMintsAsSign(t *testing.T) {
	t.Parallel()
	e := tokenEnv(t)
	before := dump(t, e.storage)
	kid := e.signKID()
	if n := e.signedCount("k", kid); n != 1 {
		t.Fatalf("tokens_signed_total after one sign = %v", n)
	}

	signed := e.mustWrite("sign/r", nil)
	resp, err := e.readToken("r", nil)
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("read token/r: err=%v resp=%s", err, respErr(resp))
	}
	if got, want := slices.Sorted(maps.Keys(resp.Data)), slices.Sorted(maps.Keys(signed.Data)); !reflect.DeepEqual(got, want) {
		t.Fatalf("token/r answers fields %v, sign/r answers %v", got, want)
	}
	if len(resp.Warnings) != len(signed.Warnings) || resp.Secret != nil || resp.Auth != nil {
		t.Fatalf("token/r response %+v differs in shape from sign/r %+v", resp, signed)
	}
	if resp.Data["kid"] != kid || signed.Data["kid"] != kid {
		t.Fatalf("kids: sign %v, read %v, want %s", signed.Data["kid"], resp.Data["kid"], kid)
	}
	if n := e.signedCount("k", kid); n != 3 {
		t.Fatalf("tokens_signed_total after two signs and one read = %v, want 3", n)
	}

	_, body, _ := e.jwks("jwks")
	fromSign, err := verifyJose(t, signed.Data["token"].(string), body, e.clock.Now())
	if err != nil {
		t.Fatalf("sign token: %v", err)
	}
	fromRead, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now())
	if err != nil {
		t.Fatalf("read token does not verify: %v", err)
	}
	if err := verifyJWTv5(t, resp.Data["token"].(string), body, e.clock.Now(), "api2"); err != nil {
		t.Fatalf("golang-jwt rejects the read token: %v", err)
	}
	if !reflect.DeepEqual(header(t, resp.Data["token"].(string)), header(t, signed.Data["token"].(string))) {
		t.Fatalf("headers differ: read %v, sign %v", header(t, resp.Data["token"].(string)), header(t, signed.Data["token"].(string)))
	}
	if fromRead["jti"] == fromSign["jti"] || fromRead["jti"] != resp.Data["jti"] {
		t.Fatalf("jti: read %v (response %v), sign %v", fromRead["jti"], resp.Data["jti"], fromSign["jti"])
	}
	for _, c := range []string{"jti", "iat", "nbf", "exp"} {
		delete(fromSign, c)
		delete(fromRead, c)
	}
	if !reflect.DeepEqual(fromRead, fromSign) {
		t.Fatalf("claims differ:\nread %v\nsign %v", fromRead, fromSign)
	}
	if fromRead["sub"] != e.entity.ID || fromRead["tier"] != "gold" {
		t.Fatalf("read token claims %v", fromRead)
	}
	if life := resp.Data["expires_at"].(int64) - resp.Data["issued_at"].(int64); life != 900 {
		t.Fatalf("read token lives %ds, want the role's ttl 900", life)
	}

	// Minting wrote nothing: the signs and the read left storage as the
	// set-up wrote it.
	sameStorage(t, before, dump(t, e.storage))
}

// The query parameters are checked as sign checks the fields of the same
// name: for each value, sign/r with it in the body and token/r with it in
// the query either both mint the same kind of token or both refuse it with
// the same message.
func TestTokenReadQueryAsSign(t *testing.T) {
	t.Parallel()
	cases := []map[string]any{
		{"audience": "api"},
		{"audience": "api2,api"},
		{"audience": []string{"api", "api2"}},
		{"audience": ""},
		{"ttl": "60"},
		{"ttl": "10m"},
		{"ttl": "1h"},
		{"ttl": "90s", "audience": "api2"},
		{"audience": "evil"},
		{"audience": "api,evil"},
		{"audience": strings.Repeat("a", maxStringLen+1)},
		{"audience": []string{"api", "a\xffb"}},
		{"ttl": "2h"},
		{"ttl": "0"},
		{"ttl": "-1"},
		{"ttl": "-5m"},
		{"ttl": "soon"},
		{"ttl": ""},
		{"ttl": "1.5"},
		{"ttl": "1500ms"},
		{"ttl": "87601h"},
		{"ttl": "9223372036854775808"},
		{"ttl": []string{"60", "120"}},
		// No value at all: whatever sign makes of it, the read makes too.
		{"ttl": nil},
		{"audience": nil},
	}
	e := tokenEnv(t)
	minted, refused := 0, 0
	for _, q := range cases {
		name := fmt.Sprintf("%q", q)
		if len(name) > 120 {
			name = name[:120] + "..."
		}
		signResp, signErr := e.write("sign/r", copyData(q))
		readResp, readErr := e.readToken("r", copyData(q))
		if signErr != nil && signErr != logical.ErrInvalidRequest {
			t.Fatalf("%s: sign: %v", name, signErr)
		}
		if readErr != signErr {
			t.Fatalf("%s: sign err=%v (%s), read err=%v (%s)", name, signErr, respErr(signResp), readErr, respErr(readResp))
		}
		if signResp.IsError() {
			refused++
			if !readResp.IsError() || readResp.Error().Error() != signResp.Error().Error() {
				t.Fatalf("%s: sign refuses with %.300q, read answers %.300s", name, signResp.Error(), respErr(readResp))
			}
			continue
		}
		minted++
		if readResp.IsError() {
			t.Fatalf("%s: sign mints, read refuses: %s", name, respErr(readResp))
		}
		_, body, _ := e.jwks("jwks")
		a, err := verifyJose(t, signResp.Data["token"].(string), body, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		b, err := verifyJose(t, readResp.Data["token"].(string), body, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(a["aud"]) != fmt.Sprint(b["aud"]) || a["exp"].(float64)-a["iat"].(float64) != b["exp"].(float64)-b["iat"].(float64) {
			t.Fatalf("%s: sign gives aud %v life %v, read gives aud %v life %v", name, a["aud"], a["exp"].(float64)-a["iat"].(float64), b["aud"], b["exp"].(float64)-b["iat"].(float64))
		}
	}
	if minted < 6 || refused < 12 {
		t.Fatalf("%d cases minted and %d refused: the table lost its spread", minted, refused)
	}
}

func copyData(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if l, ok := v.([]string); ok {
			v = append([]string(nil), l...)
		}
		c[k] = v
	}
	return c
}

// Any query parameter other than audience and ttl is a 400 that names it,
// never silently ignored: caller claims and subject stay on sign, the role
// comes from the path alone, and a typo is caught. Nothing is minted.
func TestTokenReadRefusesOtherParameters(t *testing.T) {
	t.Parallel()
	e := tokenEnv(t)
	kid := e.signKID()
	before := dump(t, e.storage)
	cases := []struct {
		query map[string]any
		field string
	}{
		{map[string]any{"tll": "60"}, "tll"},
		{map[string]any{"TTL": "60"}, "TTL"},
		{map[string]any{"claims": `{"scope":"read"}`}, "claims"},
		{map[string]any{"subject": "svc-a"}, "subject"},
		{map[string]any{"role": "other"}, "role"},
		{map[string]any{"batch_input": "[{}]"}, "batch_input"},
		{map[string]any{"audiences": "api"}, "audiences"},
		{map[string]any{"audience": "api", "scope": "read"}, "scope"},
		{map[string]any{"kid": "x"}, "kid"},
		{map[string]any{"alg": "none"}, "alg"},
		{map[string]any{"ttl": 5.5}, "ttl"},
		{map[string]any{"ttl": true}, "ttl"},
		{map[string]any{"ttl": map[string]any{}}, "ttl"},
		{map[string]any{"audience": 5}, "audience"},
		{map[string]any{"audience": map[string]any{"a": 1}}, "audience"},
		{map[string]any{"audience": []any{"api", 1}}, "audience"},
	}
	for _, tc := range cases {
		resp, err := e.readToken("r", tc.query)
		expect400(t, resp, err, tc.field)
		if msg := resp.Error().Error(); !hostileNamesField(msg, tc.field) {
			t.Fatalf("query %v: message does not name %q: %s", tc.query, tc.field, msg)
		}
	}
	if n := e.signedCount("k", kid); n != 1 {
		t.Fatalf("refused reads minted: tokens_signed_total = %v, want the 1 sign", n)
	}
	sameStorage(t, before, dump(t, e.storage))
}

// A read mints only for a role that opted in: allow_token_read defaults to
// false, is stored and read back as written, and without it a read is a 400
// that says how to enable it, while sign works as before.
func TestTokenReadOptIn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	if v := e.read("roles/r").Data["allow_token_read"]; v != false {
		t.Fatalf("allow_token_read of a new role = %v, want false", v)
	}
	before := dump(t, e.storage)
	resp, err := e.readToken("r", nil)
	expect400(t, resp, err, "allow_token_read", "vault write jwt/roles/r allow_token_read=true", "jwt/token/r", "may mint", "jwt/sign/r")
	// Query parameters do not get past the gate either.
	resp, err = e.readToken("r", map[string]any{"ttl": "60", "audience": "api"})
	expect400(t, resp, err, "allow_token_read")
	sameStorage(t, before, dump(t, e.storage))
	e.mustWrite("sign/r", nil)

	for _, v := range []any{true, "false", "true", false, "1"} {
		e.mustWrite("roles/r", map[string]any{"allow_token_read": v})
		want := v == true || v == "true" || v == "1"
		if got := e.read("roles/r").Data["allow_token_read"]; got != want {
			t.Fatalf("wrote allow_token_read=%v, read back %v", v, got)
		}
		resp, err := e.readToken("r", nil)
		if want != (err == nil && resp != nil && !resp.IsError()) {
			t.Fatalf("allow_token_read=%v: read token/r gives err=%v resp=%s", v, err, respErr(resp))
		}
		// The stored entry says exactly what was written.
		if stored := dump(t, e.storage)["roles/r"]; !strings.Contains(stored, fmt.Sprintf(`"allow_token_read":%v`, want)) {
			t.Fatalf("stored role %s, want allow_token_read %v", stored, want)
		}
	}
	// Other role writes keep it.
	e.mustWrite("roles/r", map[string]any{"ttl": "10m"})
	if got := e.read("roles/r").Data["allow_token_read"]; got != true {
		t.Fatalf("a write of ttl alone changed allow_token_read to %v", got)
	}
	// And the restarted backend reads it from storage.
	if got := e.restart().read("roles/r").Data["allow_token_read"]; got != true {
		t.Fatalf("after a restart allow_token_read = %v", got)
	}
}

// The read answers every refusal sign answers, with the same message: no
// such role, no issuer, no active key yet, a ring that is gone.
func TestTokenReadRefusesAsSign(t *testing.T) {
	t.Parallel()
	check := func(t *testing.T, e *testEnv, role string, fragment string) {
		t.Helper()
		sresp, serr := e.write("sign/"+role, nil)
		rresp, rerr := e.readToken(role, nil)
		expect400(t, sresp, serr, fragment)
		expect400(t, rresp, rerr, fragment)
		if sresp.Error().Error() != rresp.Error().Error() {
			t.Fatalf("sign says %q, read says %q", sresp.Error(), rresp.Error())
		}
	}
	t.Run("no role", func(t *testing.T) {
		e := tokenEnv(t)
		check(t, e, "nope", "no role")
	})
	t.Run("no issuer", func(t *testing.T) {
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"jwks_max_age": 60})
		e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
		e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allow_token_read": true})
		check(t, e, "r", "issuer")
	})
	t.Run("no active key yet", func(t *testing.T) {
		e := tokenEnv(t)
		e.mustWrite("keys/fresh", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
		e.mustWrite("roles/fresh", map[string]any{"key": "fresh", "audiences": "api", "allow_token_read": true})
		check(t, e, "fresh", "no active key yet")
	})
	t.Run("entity-less caller", func(t *testing.T) {
		e := tokenEnv(t)
		e.entity.ID = ""
		check(t, e, "r", "no Vault entity")
	})
}

// A role written by the fixtures of every schema version before
// allow_token_read existed (1 to 3: the field came without a schema change)
// reads back with it false and does not mint on a read until it is set.
func TestTokenReadFromOlderFixtures(t *testing.T) {
	t.Parallel()
	for _, v := range fixtureVersions {
		if v > 3 {
			continue // written with allow_token_read
		}
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { tokenReadFromFixtures(t, v) })
	}
}

func tokenReadFromFixtures(t *testing.T, version int) {
	s := loadFixtures(t, version)
	roles := mustList(t, s, rolePrefix)
	if len(roles) == 0 {
		t.Fatalf("the version %d fixtures hold no role", version)
	}
	for _, key := range roles {
		entry, err := s.Get(context.Background(), rolePrefix+key)
		if err != nil || entry == nil {
			t.Fatalf("fixture role %s: %v", key, err)
		}
		if strings.Contains(string(entry.Value), "allow_token_read") {
			t.Fatalf("fixture role %s already has allow_token_read; it no longer shows an old entry", key)
		}
	}
	e := newEnvOn(t, s, &fakeClock{now: fixtureTime.Add(95 * time.Minute)})
	if v := e.read("roles/api").Data["allow_token_read"]; v != false {
		t.Fatalf("allow_token_read of a version %d role = %v, want false", version, v)
	}
	resp, err := e.readToken("api", nil)
	expect400(t, resp, err, "allow_token_read")
	e.mustWrite("roles/api", map[string]any{"allow_token_read": true})
	resp, err = e.readToken("api", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("read token/api: %v %s", err, respErr(resp))
	}
	_, body, _ := e.jwks("jwks")
	claims, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claims["tier"] != "gold" || claims["aud"] != "https://api.example.com" {
		t.Fatalf("claims %v", claims)
	}
}

// BenchmarkTokenRead mints through HandleRequest with a read of token/r,
// beside a read of config, the cheapest authenticated read: the in-process
// part of the ratio the load script measures through Vault.
func BenchmarkTokenRead(b *testing.B) {
	for _, a := range benchAlgs[:3] {
		b.Run(a.alg, func(b *testing.B) {
			e := benchEnv(b, a.alg, a.bits)
			e.mustWrite("roles/r", map[string]any{"allow_token_read": true})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
					Operation: logical.ReadOperation, Path: "token/r", Storage: e.storage, EntityID: e.entity.ID, MountPoint: "jwt/",
				})
				if err != nil || resp.IsError() {
					b.Fatal(err, respErr(resp))
				}
			}
		})
	}
	b.Run("config read", func(b *testing.B) {
		e := benchEnv(b, "ES256", 0)
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
				Operation: logical.ReadOperation, Path: "config", Storage: e.storage, EntityID: e.entity.ID, MountPoint: "jwt/",
			})
			if err != nil || resp.IsError() {
				b.Fatal(err, respErr(resp))
			}
		}
	})
}

// mustList lists the keys under prefix in s.
func mustList(t *testing.T, s logical.Storage, prefix string) []string {
	t.Helper()
	keys, err := s.List(context.Background(), prefix)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
