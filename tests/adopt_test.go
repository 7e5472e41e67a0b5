package tests

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// Adopting an existing issuer without a trust cutover, on a real Vault, with
// the real `vault transit import` command: tokens the old issuer signed
// before the import keep verifying through the plugin's JWKS under the same
// kid (go-jose, jwx, keyfunc, go-oidc and Node jose), the imported key signs
// at once, a verifier that pinned only the old key fails once the imported
// key's successor signs, the old tokens stop verifying only after the
// imported key's remove_at, and an old public key trusted for a while
// verifies until its expires_at.

// legacyIssuer is the issuer being adopted: its signing key, outside Vault.
type legacyIssuer struct {
	key    crypto.Signer
	kid    string
	alg    string
	iss    string
	aud    string
	signed int
}

// token signs a token the way the old issuer did, valid for ttl.
func (l *legacyIssuer) token(t *testing.T, ttl time.Duration) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(l.alg), Key: jose.JSONWebKey{Key: l.key, KeyID: l.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	l.signed++
	tok, err := josejwt.Signed(signer).Claims(josejwt.Claims{
		Issuer: l.iss, Subject: fmt.Sprintf("legacy-workload-%d", l.signed), Audience: josejwt.Audience{l.aud},
		IssuedAt: josejwt.NewNumericDate(now), NotBefore: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(ttl)),
		ID: fmt.Sprintf("legacy-%d", l.signed),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// publicJWKS is the old issuer's own JWKS: what pinned verifiers hold.
func (l *legacyIssuer) publicJWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: l.key.Public(), KeyID: l.kid, Algorithm: l.alg, Use: "sig"}}}
}

// keyFile writes key as the CLI takes it: base64 of PKCS#8 DER, in a file.
func keyFile(t *testing.T, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.b64")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(der)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// transitImport runs the unmodified `vault transit import <mount>/keys/<name>
// @file k=v...` against addr with the root token, and returns its output and
// exit code.
func transitImport(t *testing.T, addr, path, file string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(bins.Vault, append([]string{"transit", "import", path, "@" + file}, args...)...)
	home := t.TempDir()
	cmd.Env = append(testserver.Env(home), "VAULT_ADDR="+addr, "VAULT_TOKEN="+rootToken)
	out, err := cmd.CombinedOutput()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run vault transit import: %v", err)
	}
	return string(out), code
}

// pinnedVerifier is a service that pinned the old issuer's key instead of
// fetching a JWKS: go-jose against a fixed key set.
type pinnedVerifier struct {
	set jose.JSONWebKeySet
	c   verifierConfig
}

func (p *pinnedVerifier) verify(token string) error {
	tok, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(p.c.alg)})
	if err != nil {
		return err
	}
	keys := p.set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return fmt.Errorf("kid %q is not the pinned key", tok.Headers[0].KeyID)
	}
	var claims josejwt.Claims
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		return err
	}
	return claims.ValidateWithLeeway(josejwt.Expected{Issuer: p.c.issuer, AnyAudience: josejwt.Audience{p.c.audience}, Time: time.Now()}, 2*time.Second)
}

// adoptTally counts, per verifier, the tokens of each kind it accepted and
// refused.
type adoptTally struct {
	mu     sync.Mutex
	counts map[string]map[string][2]int // verifier -> kind -> [accepted, refused]
}

func (a *adoptTally) add(verifier, kind string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.counts == nil {
		a.counts = map[string]map[string][2]int{}
	}
	if a.counts[verifier] == nil {
		a.counts[verifier] = map[string][2]int{}
	}
	c := a.counts[verifier][kind]
	if ok {
		c[0]++
	} else {
		c[1]++
	}
	a.counts[verifier][kind] = c
}

func (a *adoptTally) String() string {
	var names []string
	for n := range a.counts {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, n := range names {
		var kinds []string
		for k := range a.counts[n] {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		fmt.Fprintf(&b, "\n  %-14s", n)
		for _, k := range kinds {
			c := a.counts[n][k]
			fmt.Fprintf(&b, " %s %d ok/%d refused;", k, c[0], c[1])
		}
	}
	return b.String()
}

// expectAll has every JWKS verifier check every token; each must be
// accepted (want) or refused (!want), within a few refreshes.
func expectAll(t *testing.T, ctx context.Context, vs map[string]jwksVerifier, tally *adoptTally, kind string, tokens []string, want bool, deadline time.Duration) {
	t.Helper()
	for _, name := range kindNames() {
		v := vs[name]
		for i, tok := range tokens {
			var err error
			until := time.Now().Add(deadline)
			for {
				_, err = v.verify(ctx, tok)
				if (err == nil) == want || time.Now().After(until) {
					break
				}
				time.Sleep(500 * time.Millisecond)
			}
			tally.add(name, kind, err == nil)
			if (err == nil) != want {
				t.Errorf("%s: %s token %d: accepted=%v, want %v: %v", name, kind, i, err == nil, want, err)
			}
		}
	}
}

// TestAdoptIssuer: an issuer adopted through the stock vault transit import
// keeps its kid and signs at once, so a service that pinned the old key and
// the JWKS verifiers both accept its tokens; the successor takes over at the
// imported key's retire_at; the old issuer's tokens (imported and trusted
// keys alike) verify until their keys leave the JWKS, the trusted key at its
// expires_at and the imported key at its remove_at, and not after.
func TestAdoptIssuer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const maxAge = 2
	m := newMount(t, "adopt", map[string]any{"jwks_max_age": maxAge})
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	oldKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	// The issuer keeps its issuer URL by pointing it at Vault: its tokens
	// already carry the mount's issuer.
	legacy := &legacyIssuer{key: rsaKey, kid: "legacy-2024", alg: "RS256", iss: m.issuer, aud: "payments"}
	retired := &legacyIssuer{key: oldKey, kid: "legacy-2023", alg: "RS256", iss: m.issuer, aud: "payments"}
	pinned := &pinnedVerifier{set: legacy.publicJWKS(), c: verifierConfig{issuer: m.issuer, audience: "payments", alg: "RS256"}}

	// Before the import: the old issuer's tokens, some outliving the
	// imported key's publication, and the pinned service accepts them.
	var legacyTokens, oldKeyTokens []string
	for i := 0; i < 4; i++ {
		legacyTokens = append(legacyTokens, legacy.token(t, 10*time.Minute))
		oldKeyTokens = append(oldKeyTokens, retired.token(t, 10*time.Minute))
	}
	tally := &adoptTally{}
	for _, tok := range legacyTokens {
		err := pinned.verify(tok)
		tally.add("pinned", "legacy", err == nil)
		if err != nil {
			t.Fatalf("the pinned service rejects the old issuer's own token: %v", err)
		}
	}

	// The import, by the stock CLI: the wrapping key is read and the key
	// wrapped by the command itself.
	out, code := transitImport(t, env.server.Addr, m.p("keys/legacy"), keyFile(t, rsaKey),
		"algorithm=RS256", "kid=legacy-2024", "rotation_period=20s", "publish_lead=10s", "verification_ttl=70s")
	if code != 0 || !strings.Contains(out, "Success!") {
		t.Fatalf("vault transit import exited %d:\n%s", code, out)
	}
	importedAt := time.Now()
	r := readRing(t, m, "legacy")
	imported, ok := r.byKid("legacy-2024")
	if !ok || imported.State != "active" || str(t, r.Data, "active_kid") != "legacy-2024" {
		t.Fatalf("after the import the ring is %+v", r.SigningKeys)
	}
	raw := r.Data["signing_keys"].([]any)[0].(map[string]any)
	if raw["imported"] != true {
		t.Fatalf("the read does not show the key as imported: %v", raw)
	}
	successor, ok := r.nextPending()
	if !ok || successor.ActivateAt != imported.RetireAt || imported.RemoveAt != imported.RetireAt+70 {
		t.Fatalf("the imported key's successor is not stocked for its retirement: %+v", r.SigningKeys)
	}
	t.Logf("imported legacy-2024: retires at +%ds, leaves the JWKS at +%ds; successor %s published now",
		imported.RetireAt-imported.ActivateAt, imported.RemoveAt-imported.ActivateAt, successor.Kid)
	// The old key with tokens still out, published until it expires.
	expiresAt := importedAt.Unix() + 45
	trustJWK, _ := json.Marshal(jose.JSONWebKey{Key: oldKey.Public(), KeyID: "legacy-2023", Algorithm: "RS256", Use: "sig"})
	env.root.mustWrite(t, m.p("keys/legacy/trust"), map[string]any{"jwk": string(trustJWK), "expires_at": expiresAt})
	createRole(t, m, "payments", map[string]any{"key": "legacy", "audiences": "payments", "ttl": "10s", "max_ttl": "10s"})

	// Verifiers move to the plugin's JWKS (go-oidc through discovery from
	// the same issuer URL).
	jwks := m.issuer + "/jwks"
	vc := verifierConfig{jwksURL: jwks, issuer: m.issuer, audience: "payments", alg: "RS256", interval: maxAge * time.Second}
	vs := startVerifiers(t, ctx, vc, jwksURLFor(jwks))
	expectAll(t, ctx, vs, tally, "legacy", legacyTokens, true, 5*time.Second)
	expectAll(t, ctx, vs, tally, "old-key-trusted", oldKeyTokens, true, 5*time.Second)

	// The imported key signs at once; the pinned service accepts those too.
	var fromImported []string
	for i := 0; i < 3; i++ {
		s := sign(t, m, "payments", nil)
		if s.Kid != "legacy-2024" {
			t.Fatalf("a token right after the import is signed by %s, not the imported key", s.Kid)
		}
		fromImported = append(fromImported, s.Token)
		if err := pinned.verify(s.Token); err != nil {
			t.Errorf("the pinned service rejects a token of the imported key: %v", err)
		}
		tally.add("pinned", "imported-key", err == nil)
	}
	expectAll(t, ctx, vs, tally, "imported-key", fromImported, true, 5*time.Second)

	// The successor takes over at the imported key's retire_at: new tokens
	// carry its kid; the pinned service rejects them, the JWKS verifiers
	// accept them, and the old tokens still verify.
	time.Sleep(time.Until(time.Unix(imported.RetireAt+1, 0)))
	var fromSuccessor []string
	for i := 0; i < 3; i++ {
		s := sign(t, m, "payments", nil)
		if s.Kid != successor.Kid {
			t.Fatalf("after the imported key retired, a token is signed by %s, want %s", s.Kid, successor.Kid)
		}
		fromSuccessor = append(fromSuccessor, s.Token)
		err := pinned.verify(s.Token)
		tally.add("pinned", "successor", err == nil)
		if err == nil {
			t.Errorf("the pinned service accepts a token of the successor; it must fail, which is why pinned services move to the JWKS before retire_at")
		}
	}
	expectAll(t, ctx, vs, tally, "successor", fromSuccessor, true, 5*time.Second)
	expectAll(t, ctx, vs, tally, "legacy-before-remove_at", legacyTokens[:2], true, 5*time.Second)

	// The trusted old key leaves at its expires_at.
	time.Sleep(time.Until(time.Unix(expiresAt+maxAge+1, 0)))
	nudgeOIDC(t, ctx, vs, vc)
	expectAll(t, ctx, vs, tally, "old-key-after-expires_at", oldKeyTokens, false, 10*time.Second)
	if time.Now().Unix() >= imported.RemoveAt {
		t.Fatal("the run is too slow to check the imported key before its remove_at")
	}
	expectAll(t, ctx, vs, tally, "legacy-before-remove_at", legacyTokens[2:], true, 5*time.Second)

	// And the imported key's own old tokens only after its remove_at.
	time.Sleep(time.Until(time.Unix(imported.RemoveAt+maxAge+1, 0)))
	nudgeOIDC(t, ctx, vs, vc)
	expectAll(t, ctx, vs, tally, "legacy-after-remove_at", legacyTokens, false, 10*time.Second)
	_, body := env.root.raw(t, http.MethodGet, m.p("jwks"), nil)
	if bytes.Contains(body, []byte("legacy-2024")) || bytes.Contains(body, []byte("legacy-2023")) {
		t.Fatalf("the JWKS still serves an adopted key: %s", body)
	}
	t.Logf("tokens accepted and refused, per verifier:%s", tally)
}

// nudgeOIDC makes go-oidc, which refetches the JWKS only for a kid it
// lacks, refetch now, as it would on the next unknown kid.
func nudgeOIDC(t *testing.T, ctx context.Context, vs map[string]jwksVerifier, c verifierConfig) {
	t.Helper()
	v := vs["go-oidc"].(*oidcVerifier)
	tok, err := throwawayToken(c)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = v.v.Verify(ctx, tok)
}

// importProxy sits between the CLI and Vault and changes what passes: the
// wrapping key read (served from another mount) or the import's ciphertext.
type importProxy struct {
	srv             *httptest.Server
	wrappingFrom    string // mount path whose wrapping key to serve instead
	alterCiphertext bool
}

func newImportProxy(t *testing.T) *importProxy {
	t.Helper()
	target, err := url.Parse(env.server.Addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &importProxy{}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		if p.wrappingFrom != "" && strings.HasSuffix(r.In.URL.Path, "/wrapping_key") {
			r.Out.URL.Path = "/v1/" + p.wrappingFrom + "/wrapping_key"
		}
		if p.alterCiphertext && strings.HasSuffix(r.In.URL.Path, "/import") {
			body, _ := io.ReadAll(r.In.Body)
			var data map[string]any
			if json.Unmarshal(body, &data) == nil {
				if ct, ok := data["ciphertext"].(string); ok {
					raw, _ := base64.StdEncoding.DecodeString(ct)
					raw[len(raw)-10] ^= 0x01 // inside the KWP-wrapped key
					data["ciphertext"] = base64.StdEncoding.EncodeToString(raw)
				}
				body, _ = json.Marshal(data)
			}
			r.Out.Body = io.NopCloser(bytes.NewReader(body))
			r.Out.ContentLength = int64(len(body))
		}
	}}
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
	return p
}

// Every bad input the CLI or the API can send is a 400 naming the field,
// and stores nothing: the mount's rings and their keys read the same after.
func TestAdoptRefusals(t *testing.T) {
	t.Parallel()
	m := newMount(t, "adopt-bad", map[string]any{"jwks_max_age": 5})
	other := newMount(t, "adopt-other", nil)
	env.root.mustRead(t, other.p("wrapping_key"))
	settings := []string{"rotation_period=1h", "publish_lead=10m", "verification_ttl=2h"}
	good, _ := rsa.GenerateKey(rand.Reader, 2048)
	out, code := transitImport(t, env.server.Addr, m.p("keys/legacy"), keyFile(t, good), append([]string{"algorithm=RS256", "kid=legacy-1"}, settings...)...)
	if code != 0 {
		t.Fatalf("the good import failed (%d):\n%s", code, out)
	}
	generated := createRing(t, m, "gen", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	pending, _ := readRing(t, m, "gen").nextPending()
	env.root.mustWrite(t, m.p("keys/gen/revoke"), map[string]any{"kid": pending.Kid})

	snapshot := func() string {
		t.Helper()
		var b strings.Builder
		list := env.root.do(t, "LIST", m.p("keys"), nil)
		fmt.Fprintf(&b, "%v\n", list.Data["keys"])
		for _, name := range []string{"legacy", "gen"} {
			resp := env.root.mustRead(t, m.p("keys/"+name))
			delete(resp.Data, "next_rotation")
			j, _ := json.Marshal(resp.Data)
			b.Write(j)
		}
		return b.String()
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	fresh, _ := rsa.GenerateKey(rand.Reader, 2048)
	proxy := newImportProxy(t)
	cli := []struct {
		name      string
		addr      string
		path      string
		key       crypto.Signer
		args      []string
		before    func()
		after     func()
		fragments []string
	}{
		{"wrong algorithm", env.server.Addr, "keys/n1", ec, []string{"algorithm=RS256"}, nil, nil, []string{"algorithm:", "EC P-256", "ES256"}},
		{"small RSA", env.server.Addr, "keys/n2", small, []string{"algorithm=RS256"}, nil, nil, []string{"ciphertext:", "1024 bits"}},
		{"corrupted ciphertext", proxy.srv.URL, "keys/n3", fresh, []string{"algorithm=RS256"}, func() { proxy.alterCiphertext = true }, func() { proxy.alterCiphertext = false }, []string{"ciphertext:", "integrity"}},
		{"wrapped for another mount's key", proxy.srv.URL, "keys/n4", fresh, []string{"algorithm=RS256"}, func() { proxy.wrappingFrom = other.path }, func() { proxy.wrappingFrom = "" }, []string{"ciphertext:", "another mount"}},
		{"existing ring", env.server.Addr, "keys/legacy", fresh, []string{"algorithm=RS256"}, nil, nil, []string{"name:", "exists"}},
		{"duplicate kid", env.server.Addr, "keys/n5", fresh, []string{"algorithm=RS256", "kid=legacy-1"}, nil, nil, []string{"kid:", "legacy-1", "unique"}},
		{"previously revoked kid", env.server.Addr, "keys/n6", fresh, []string{"algorithm=RS256", "kid=" + pending.Kid}, nil, nil, []string{"kid:", "revoked", "never used again"}},
		{"the same key under another kid", env.server.Addr, "keys/n7", good, []string{"algorithm=RS256", "kid=legacy-2"}, nil, nil, []string{"ciphertext:", "already key legacy-1"}},
		{"transit's type field", env.server.Addr, "keys/n8", fresh, []string{"type=rsa-2048"}, nil, nil, []string{"type:", "unknown field"}},
	}
	for _, c := range cli {
		before := snapshot()
		if c.before != nil {
			c.before()
		}
		out, code := transitImport(t, c.addr, m.p(c.path), keyFile(t, c.key), append(c.args, settings...)...)
		if c.after != nil {
			c.after()
		}
		if code == 0 || !strings.Contains(out, "Code: 400") {
			t.Errorf("%s: vault transit import exited %d, want a 400:\n%s", c.name, code, out)
		}
		for _, f := range c.fragments {
			if !strings.Contains(out, f) {
				t.Errorf("%s: the error does not say %q:\n%s", c.name, f, out)
			}
		}
		if after := snapshot(); after != before {
			t.Errorf("%s: storage changed:\n%s\n%s", c.name, before, after)
		}
		t.Logf("%s: %s", c.name, lastLine(out))
	}

	// Through the API: a plain key, and trusted keys that clash or carry
	// private members.
	der, _ := x509.MarshalPKCS8PrivateKey(fresh)
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: fresh, KeyID: "with-private", Algorithm: "RS256"})
	pubJWK := func(kid string) string {
		j, _ := json.Marshal(jose.JSONWebKey{Key: fresh.Public(), KeyID: kid, Algorithm: "RS256", Use: "sig"})
		return string(j)
	}
	dValue := base64.RawURLEncoding.EncodeToString(fresh.D.Bytes())
	api := []struct {
		name, path string
		body       map[string]any
		fragments  []string
	}{
		{"plain private key", "keys/n9/import", map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(der), "algorithm": "RS256"}, []string{"ciphertext:", "not wrapped"}},
		{"trusted kid collides with a ring key", "keys/legacy/trust", map[string]any{"jwk": pubJWK(generated), "expires_at": time.Now().Unix() + 600}, []string{"kid:", generated}},
		{"trusted kid of the imported key", "keys/legacy/trust", map[string]any{"jwk": pubJWK("legacy-1"), "expires_at": time.Now().Unix() + 600}, []string{"kid:", "legacy-1"}},
		{"private material in a trusted key", "keys/legacy/trust", map[string]any{"jwk": string(privJWK), "expires_at": time.Now().Unix() + 600}, []string{"jwk:", "private key member(s) d, dp, dq, p, q, qi"}},
	}
	for _, c := range api {
		before := snapshot()
		resp := env.root.write(t, m.p(c.path), c.body)
		if resp.Status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400: %s", c.name, resp.Status, resp.Body)
		}
		for _, f := range c.fragments {
			if !resp.errorsMention(f) {
				t.Errorf("%s: the error does not say %q: %s", c.name, f, resp.Body)
			}
		}
		if bytes.Contains(resp.Body, []byte(dValue[:32])) || bytes.Contains(resp.Body, []byte(base64.StdEncoding.EncodeToString(der)[40:80])) {
			t.Errorf("%s: the answer repeats key material", c.name)
		}
		if after := snapshot(); after != before {
			t.Errorf("%s: storage changed", c.name)
		}
		t.Logf("%s: %s", c.name, strings.Join(resp.Errors, "; "))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
