package tests

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"testing"
)

// workloadLogin creates a userpass user holding an ACL policy with the given
// text and returns a client with its login token and the token's entity.
func workloadLogin(t *testing.T, m *mount, name, policy string) (*vaultClient, string) {
	t.Helper()
	polName := "wl-" + m.path + "-" + name
	env.root.mustDo(t, http.MethodPut, "sys/policies/acl/"+polName, map[string]any{"policy": policy})
	user := polName
	env.root.mustWrite(t, "auth/userpass/users/"+user, map[string]any{"password": "pw-" + user, "token_policies": []string{polName}})
	login := newVaultClient(env.root.addr, "").mustWrite(t, "auth/userpass/login/"+user, map[string]any{"password": "pw-" + user})
	if login.Auth == nil || login.Auth.ClientToken == "" || login.Auth.EntityID == "" {
		t.Fatalf("login %s: %s", user, login.Body)
	}
	return env.root.withToken(login.Auth.ClientToken), login.Auth.EntityID
}

// dataKeys lists the fields of a response's data.
func dataKeys(d map[string]any) []string {
	out := make([]string, 0, len(d))
	for k := range d {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestWorkloadTokenRead reads token/<role> through a real Vault with a
// policy that grants only read on it: a normal JSON response (not raw) in
// Vault's data envelope with the same fields as sign, Cache-Control
// no-store from Vault, no lease, a token both libraries verify; query
// parameters as sign checks them and anything else refused by name; no
// mint without allow_token_read; and read and update stay separate
// capabilities (read cannot sign, update cannot read).
func TestWorkloadTokenRead(t *testing.T) {
	t.Parallel()
	m := newMount(t, "wlread", map[string]any{"jwks_max_age": 60})
	createRing(t, m, "es", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	createRing(t, m, "ed", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	createRole(t, m, "es", map[string]any{"key": "es", "audiences": []string{apiAudience, "api2"}, "ttl": "10m", "max_ttl": "30m", "claims": map[string]any{"tier": "gold"}, "allow_token_read": true})
	createRole(t, m, "ed", map[string]any{"key": "ed", "audiences": []string{apiAudience}, "allow_token_read": true})
	createRole(t, m, "closed", map[string]any{"key": "es", "audiences": []string{apiAudience}})
	if got := boolean(t, env.root.mustRead(t, m.p("roles/closed")).Data, "allow_token_read"); got {
		t.Fatalf("roles/closed allow_token_read = true, want the default false")
	}

	reader, entity := workloadLogin(t, m, "reader", `path "`+m.path+`/token/*" { capabilities = ["read"] }`)
	jwks := fetchJWKS(t, m, "jwks")

	checks := 0
	for _, tc := range []struct {
		role, alg, query string
		aud              []string
		life             int64
	}{
		{"es", "ES256", "", []string{apiAudience, "api2"}, 600},
		{"es", "ES256", "?audience=api2&ttl=60", []string{"api2"}, 60},
		{"es", "ES256", "?audience=" + url.QueryEscape(apiAudience) + "&audience=api2&ttl=30m", []string{apiAudience, "api2"}, 1800},
		{"es", "ES256", "?audience=" + url.QueryEscape(apiAudience+",api2"), []string{apiAudience, "api2"}, 600},
		{"ed", "EdDSA", "", []string{apiAudience}, 900},
		{"ed", "EdDSA", "?ttl=5m", []string{apiAudience}, 300},
	} {
		path := m.p("token/" + tc.role + tc.query)
		resp := reader.do(t, http.MethodGet, path, nil)
		if resp.Status != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", path, resp.Status, resp.Body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("GET %s: Cache-Control %q, want no-store", path, cc)
		}
		requireMediaType(t, path, &http.Response{Header: resp.Header}, "application/json")
		var envl map[string]json.RawMessage
		if err := json.Unmarshal(resp.Body, &envl); err != nil {
			t.Fatal(err)
		}
		if string(envl["lease_duration"]) != "0" || string(envl["renewable"]) != "false" || string(envl["lease_id"]) != `""` {
			t.Errorf("GET %s: the response carries a lease: %s", path, resp.Body)
		}
		if got, want := dataKeys(resp.Data), []string{"expires_at", "issued_at", "jti", "kid", "token"}; !slices.Equal(got, want) {
			t.Errorf("GET %s: data fields %v, want sign's %v", path, got, want)
		}
		token := str(t, resp.Data, "token")
		hdr, claims, err := verifyWithJose(token, jwks.Set, tc.alg)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		if hdr.KeyID != str(t, resp.Data, "kid") {
			t.Errorf("GET %s: header kid %s, response kid %s", path, hdr.KeyID, resp.Data["kid"])
		}
		for _, aud := range tc.aud {
			if _, err := verifyWithGolangJWT(token, jwks.Set, expectation{Alg: tc.alg, Issuer: m.issuer, Audience: aud, Subject: entity}); err != nil {
				t.Fatalf("GET %s: audience %s: %v", path, aud, err)
			}
		}
		if a := audList(claims["aud"]); !slices.Equal(a, tc.aud) {
			t.Errorf("GET %s: aud %v, want %v", path, a, tc.aud)
		}
		if life := integer(t, resp.Data, "expires_at") - integer(t, resp.Data, "issued_at"); life != tc.life {
			t.Errorf("GET %s: token lives %ds, want %d", path, life, tc.life)
		}
		if tc.role == "es" && claims["tier"] != "gold" {
			t.Errorf("GET %s: static claim missing: %v", path, claims)
		}
		checks++
	}

	// Refusals: each is a 400 whose message names the parameter or says
	// how to enable the read.
	for _, tc := range []struct{ query, want string }{
		{"token/es?tll=60", "tll"},
		{"token/es?claims=" + url.QueryEscape(`{"scope":"x"}`), "claims"},
		{"token/es?subject=svc", "subject"},
		{"token/es?role=ed", "role"},
		{"token/es?ttl=2h", "max_ttl"},
		{"token/es?ttl=soon", "ttl"},
		{"token/es?audience=evil", "audience"},
		{"token/closed", "allow_token_read=true"},
		{"token/nope", "no role"},
	} {
		resp := reader.do(t, http.MethodGet, m.p(tc.query), nil)
		if resp.Status != http.StatusBadRequest || !resp.errorsMention(tc.want) {
			t.Errorf("GET %s: status %d, errors %q; want a 400 mentioning %q", tc.query, resp.Status, resp.Errors, tc.want)
		}
		checks++
	}

	// read on token/* does not sign, and the harness signer (update on
	// sign/*) cannot mint by reading.
	if resp := reader.do(t, http.MethodPost, m.p("sign/es"), map[string]any{}); resp.Status != http.StatusForbidden {
		t.Errorf("a read-only token signed: status %d: %s", resp.Status, resp.Body)
	}
	if resp := env.signer.do(t, http.MethodGet, m.p("token/es"), nil); resp.Status != http.StatusForbidden {
		t.Errorf("an update-only token read token/es: status %d: %s", resp.Status, resp.Body)
	}
	if checks != 15 {
		t.Fatalf("%d checks ran, want 15", checks)
	}
	t.Logf("token/<role> through Vault: %d reads checked", checks)
}

// audList is a token's aud as a list.
func audList(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, e := range a {
			s, _ := e.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}
