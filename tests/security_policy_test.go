package tests

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// TestSecurityLeastPrivilege loads the example policies of policies/ (with
// the mount path changed to this test's mount), logs in users that hold
// them, and checks with their real tokens what each may and may not do; and
// that without a token only the JWKS and discovery documents answer.
func TestSecurityLeastPrivilege(t *testing.T) {
	t.Parallel()
	m := newMount(t, "secpolicy", map[string]any{"jwks_max_age": 60})
	createRing(t, m, "demo", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	createRing(t, m, "other", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	// Both roles mint on a read, so only the ACL stands between a read and
	// a token.
	createRole(t, m, "demo", map[string]any{"key": "demo", "audiences": []string{"api"}, "allow_token_read": true})
	createRole(t, m, "other", map[string]any{"key": "other", "audiences": []string{"api"}, "allow_token_read": true})

	signer := loginAs(t, m, "signer-demo")
	admin := loginAs(t, m, "rotation-admin")
	auditor := loginAs(t, m, "auditor")
	workload := loginAs(t, m, "workload-demo")
	importer := loginAs(t, m, "importer")
	publisherAdmin := loginAs(t, m, "publisher-admin")
	trustedKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	trustedJWK, _ := json.Marshal(jose.JSONWebKey{Key: trustedKey.Public(), KeyID: "policy-old-key", Algorithm: "RS256", Use: "sig"})
	anon := env.root.withToken("")

	type check struct {
		method, path string
		body         map[string]any
	}
	get := func(p string) check { return check{http.MethodGet, p, nil} }
	list := func(p string) check { return check{"LIST", p, nil} }
	post := func(p string, body map[string]any) check { return check{http.MethodPost, p, body} }
	del := func(p string) check { return check{http.MethodDelete, p, nil} }

	// Everything that can be asked of the mount, each with a valid request.
	everything := map[string]check{
		"sign demo":          post("sign/demo", map[string]any{}),
		"sign other":         post("sign/other", map[string]any{}),
		"sign demo in caps":  post("sign/DEMO", map[string]any{}),
		"sign demo batch":    post("sign/demo", map[string]any{"batch_input": []any{map[string]any{}}}),
		"token demo":         get("token/demo"),
		"token demo query":   get("token/demo?ttl=60&audience=api"),
		"token other":        get("token/other"),
		"token demo in caps": get("token/DEMO"),
		"read config":        get("config"),
		"write config":       post("config", map[string]any{"jwks_max_age": 60}),
		"list keys":          list("keys"),
		"read key":           get("keys/demo"),
		"update key":         post("keys/demo", map[string]any{"rotation_period": "1h"}),
		"create key":         post("keys/new-by-caller", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"}),
		"rotate":             post("keys/other/rotate", map[string]any{"expected_active_kid": "none-matches"}),
		"revoke":             post("keys/other/revoke", map[string]any{"kid": "no-such-kid"}),
		"rollback":           post("keys/other/rollback", map[string]any{}),
		"delete key":         del("keys/no-such-ring"),
		"list roles":         list("roles"),
		"read role":          get("roles/demo"),
		"write role":         post("roles/demo", map[string]any{"ttl": "10m"}),
		"create role":        post("roles/new-by-caller", map[string]any{"key": "demo", "audiences": "api"}),
		"delete role":        del("roles/no-such-role"),
		"read verifiers":     get("verifiers"),
		"read metrics":       get("metrics"),
		"read clock":         get("clock"),
		"accept clock":       post("clock/accept", map[string]any{}),
		"read jwks":          get("jwks"),
		"read ring jwks":     get("jwks/demo"),
		"read well-known":    get(".well-known/jwks.json"),
		"read discovery":     get(".well-known/openid-configuration"),
		"write jwks":         post("jwks", map[string]any{"keys": []any{}}),
		"read unknown":       get("nothing-here"),
		"read unknown known": get(".well-known/nothing-here"),
		"read wrapping key":  get("wrapping_key"),
		// A valid request but for the key material: a 400 once allowed.
		"import": post("keys/imported/import", map[string]any{"ciphertext": "AAAA", "algorithm": "RS256"}),
		"trust":  post("keys/other/trust", map[string]any{"jwk": string(trustedJWK), "expires_at": time.Now().Unix() + 3600}),
		// Publishers; allowing them ambient credentials is a config write.
		"list publishers":  list("publishers"),
		"read publisher":   get("publishers/site"),
		"write publisher":  post("publishers/site", map[string]any{"type": "webdav", "url": "http://127.0.0.1:9/keys/", "username": "u", "password": "policy-pw"}),
		"delete publisher": del("publishers/no-such-publisher"),
		"allow ambient":    post("config", map[string]any{"publishers_allow_ambient_credentials": true}),
	}
	public := []string{"read jwks", "read ring jwks", "read well-known", "read discovery"}
	allowed := map[string][]string{
		"signer-demo":     append([]string{"sign demo", "sign demo batch"}, public...),
		"rotation-admin":  append([]string{"list keys", "read key", "update key", "create key", "rotate", "revoke", "rollback", "delete key", "read config", "read verifiers", "read clock", "accept clock"}, public...),
		"auditor":         append([]string{"read config", "list keys", "read key", "list roles", "read role", "read verifiers", "read metrics", "read clock"}, public...),
		"importer":        append([]string{"read wrapping key", "import", "trust", "list keys", "read key"}, public...),
		"workload-demo":   append([]string{"token demo", "token demo query"}, public...),
		"publisher-admin": append([]string{"list publishers", "read publisher", "write publisher", "delete publisher", "read config", "list keys"}, public...),
		"no token":        public,
	}
	// Requests Vault hands to the plugin without any token check, because
	// their paths match its unauthenticated patterns, but that it does not
	// serve: they must be refused (400, 404 or 405), with or without a token.
	unservedPublic := map[string]bool{"write jwks": true, "read unknown known": true}

	clients := map[string]*vaultClient{"signer-demo": signer, "rotation-admin": admin, "auditor": auditor, "workload-demo": workload, "importer": importer, "publisher-admin": publisherAdmin, "no token": anon}
	// Every shipped policy is checked here.
	shipped, err := filepath.Glob(filepath.Join("..", "policies", "*.hcl"))
	if err != nil || len(shipped) == 0 {
		t.Fatalf("no policies found: %v", err)
	}
	for _, f := range shipped {
		if name := strings.TrimSuffix(filepath.Base(f), ".hcl"); clients[name] == nil {
			t.Errorf("policies/%s.hcl is not checked by this test: add a login for it and what it may do", name)
		}
	}
	checks := 0
	for who, c := range clients {
		ok := map[string]bool{}
		for _, name := range allowed[who] {
			ok[name] = true
		}
		for name, ch := range everything {
			resp := c.do(t, ch.method, m.p(ch.path), ch.body)
			checks++
			switch {
			case ok[name]:
				if resp.Status == http.StatusForbidden || resp.Status >= 500 {
					t.Errorf("%s: %s (%s %s) should be allowed: status %d: %s", who, name, ch.method, ch.path, resp.Status, resp.Body)
				}
				if (strings.HasPrefix(name, "sign") || strings.HasPrefix(name, "token")) && resp.Status != http.StatusOK {
					t.Errorf("%s: %s: status %d: %s", who, name, resp.Status, resp.Body)
				}
			case unservedPublic[name]:
				if resp.Status != http.StatusBadRequest && resp.Status != http.StatusNotFound && resp.Status != http.StatusMethodNotAllowed {
					t.Errorf("%s: %s (%s %s): status %d, want 400, 404 or 405: %s", who, name, ch.method, ch.path, resp.Status, resp.Body)
				}
			default:
				if resp.Status != http.StatusForbidden {
					t.Errorf("%s: %s (%s %s) should be denied: status %d, want 403: %s", who, name, ch.method, ch.path, resp.Status, resp.Body)
				}
			}
		}
	}
	// What the allowed writes did is what the policies allow, and the
	// denied ones changed nothing: the role's ttl is the one set by root.
	if got := integer(t, env.root.mustRead(t, m.p("roles/demo")).Data, "ttl"); got != 900 {
		t.Errorf("roles/demo ttl = %d: a denied write changed it", got)
	}
	if resp := env.root.read(t, m.p("roles/new-by-caller")); resp.Status != http.StatusNotFound {
		t.Errorf("a role was created by a caller not allowed to: %s", resp.Body)
	}
	if resp := env.root.read(t, m.p("keys/new-by-caller")); resp.Status != http.StatusOK {
		t.Errorf("the rotation admin could not create a ring: status %d", resp.Status)
	}
	// Only the importer's trust was written.
	if tk, _ := env.root.mustRead(t, m.p("keys/other")).Data["trusted_keys"].([]any); len(tk) != 1 {
		t.Errorf("ring other trusts %d keys, want the importer's one", len(tk))
	}
	// No one but root allowed ambient credentials.
	if got, _ := env.root.mustRead(t, m.p("config")).Data["publishers_allow_ambient_credentials"].(bool); got {
		t.Errorf("publishers_allow_ambient_credentials was turned on by a caller not allowed to write config")
	}
	t.Logf("least privilege: %d policies (signer-demo, rotation-admin, auditor, importer, workload-demo, publisher-admin) and no token, %d requests checked", len(shipped), checks)
}

// loginAs writes policies/<name>.hcl for mount m (jwt/ becomes m's path,
// and the signer's role is demo as in the file), creates a userpass user
// holding it, and returns a client with that user's token.
func loginAs(t *testing.T, m *mount, name string) *vaultClient {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "policies", name+".hcl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `path "jwt/`) {
		t.Fatalf("policies/%s.hcl has no path under jwt/", name)
	}
	policy := strings.ReplaceAll(string(raw), `"jwt/`, `"`+m.path+`/`)
	polName := "sec-" + m.path + "-" + name
	env.root.mustDo(t, http.MethodPut, "sys/policies/acl/"+polName, map[string]any{"policy": policy})
	user := "sec-" + m.path + "-" + name
	env.root.mustWrite(t, "auth/userpass/users/"+user, map[string]any{"password": "pw-" + user, "token_policies": []string{polName}})
	login := newVaultClient(env.root.addr, "").mustWrite(t, "auth/userpass/login/"+user, map[string]any{"password": "pw-" + user})
	if login.Auth == nil || login.Auth.ClientToken == "" {
		t.Fatalf("login %s: %s", user, login.Body)
	}
	return env.root.withToken(login.Auth.ClientToken)
}
