package jwtrotor

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
)

// wrappingPub reads the mount's wrapping key the way vault transit import
// does: the public_key field, a PKIX PEM RSA key.
func (e *testEnv) wrappingPub() *rsa.PublicKey {
	e.t.Helper()
	resp := e.read("wrapping_key")
	block, _ := pem.Decode([]byte(resp.Data["public_key"].(string)))
	if block == nil || block.Type != "PUBLIC KEY" {
		e.t.Fatalf("wrapping_key public_key is not a PUBLIC KEY PEM block: %v", resp.Data)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		e.t.Fatal(err)
	}
	rk, ok := pub.(*rsa.PublicKey)
	if !ok || rk.N.BitLen() != 4096 {
		e.t.Fatalf("wrapping key is %T of %d bits, want RSA-4096", pub, rk.N.BitLen())
	}
	return rk
}

func mustPKCS8(t testing.TB, k crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// importData is an import request for key with the given extra fields.
func (e *testEnv) importData(key crypto.Signer, extra map[string]any) map[string]any {
	data := map[string]any{"ciphertext": wrapForImport(e.t, e.wrappingPub(), mustPKCS8(e.t, key))}
	for k, v := range extra {
		data[k] = v
	}
	return data
}

func thumbprintOf(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// newTestKey makes a key of kind ("RSA-<bits>", "P-256", "P-384", "P-521"
// or "Ed25519") from the test key pool, never one a ring of the test made;
// RSA sizes it refuses for a ring (1024) are kinds too, for the import's
// refusals.
func newTestKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	alg, bits := "", 0
	switch kind {
	case "P-256":
		alg = "ES256"
	case "P-384":
		alg = "ES384"
	case "P-521":
		alg = "ES512"
	case "Ed25519":
		alg = "EdDSA"
	default:
		n, err := strconv.Atoi(strings.TrimPrefix(kind, "RSA-"))
		if err != nil || !strings.HasPrefix(kind, "RSA-") {
			t.Fatalf("no key kind %s", kind)
		}
		alg, bits = "RS256", n
	}
	g, err := testKeySource(t, "test/")(alg, bits)
	if err != nil {
		t.Fatal(err)
	}
	return g.Private
}

// An imported key of every kind becomes its new ring's active key at once,
// under the kid given (or its thumbprint), signs tokens that verify with the
// kid and key the old issuer's verifiers know, and is recorded as imported.
func TestImportKeepsIdentityAndSignsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	for _, c := range []struct{ kind, alg, kid string }{
		{"RSA-2048", "RS256", "legacy-2024"},
		{"RSA-3072", "PS384", ""},
		// The largest key: its ciphertext fits the 4096-byte string bound.
		{"RSA-4096", "RS512", strings.Repeat("k", maxKIDLen)},
		{"P-256", "ES256", "did:web:old.example#key-1"},
		{"P-384", "ES384", "k/1+="},
		{"P-521", "ES512", ""},
		{"Ed25519", "EdDSA", "ed@old"},
	} {
		name := strings.ToLower(strings.NewReplacer("-", "").Replace(c.kind))
		key := newTestKey(t, c.kind)
		tp := thumbprintOf(t, key.Public())
		want := c.kid
		if want == "" {
			want = tp
		}
		extra := map[string]any{"algorithm": c.alg, "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"}
		if c.kid != "" {
			extra["kid"] = c.kid
		}
		now := e.clock.Now().Unix()
		data := e.importData(key, extra)
		t.Logf("%s: ciphertext of %d characters (bound %d)", c.kind, len(data["ciphertext"].(string)), maxStringLen)
		resp := e.mustWrite("keys/"+name+"/import", data)
		if resp.Data["kid"] != want || resp.Data["active_kid"] != want {
			t.Fatalf("%s: kid %v, active %v, want %s", c.kind, resp.Data["kid"], resp.Data["active_kid"], want)
		}
		r := e.ring(name)
		k := r.Keys[0]
		if !k.Imported || k.Forced || k.ActivateAt != now || k.PublishAt != now || k.thumbprint() != tp || !k.HasPrivate {
			t.Fatalf("%s: stored %+v", c.kind, k)
		}
		// Its successor is stocked, published now, a full period later.
		if len(r.Keys) < 2 || r.Keys[1].PublishAt != now || r.Keys[1].ActivateAt != now+3600 || k.RetireAt != now+3600 || k.RemoveAt != now+3600+7200 {
			t.Fatalf("%s: schedule %s", c.kind, keysSummary(r.Keys))
		}
		if c.alg == "PS384" && r.RSABits != 3072 {
			t.Fatalf("the ring's rsa_bits is %d, want the imported key's 3072", r.RSABits)
		}
		// The private half is stored under the thumbprint.
		if _, ok := dump(t, e.storage)[privatePath(name, tp)]; !ok {
			t.Fatalf("%s: private half not at %s", c.kind, privatePath(name, tp))
		}
		read := e.read("keys/" + name).Data["signing_keys"].([]map[string]any)
		if read[0]["imported"] != true || read[0]["thumbprint"] != tp || read[1]["imported"] != false {
			t.Fatalf("%s: read %v", c.kind, read[:2])
		}
		e.mustWrite("roles/"+name, map[string]any{"key": name, "audiences": "api"})
		tok := e.mustWrite("sign/"+name, nil)
		if tok.Data["kid"] != want {
			t.Fatalf("%s: signed with %v", c.kind, tok.Data["kid"])
		}
		// The old issuer's verifiers hold exactly this kid and key.
		oldJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: want, Algorithm: c.alg, Use: "sig"}}})
		if _, err := verifyJose(t, tok.Data["token"].(string), oldJWKS, e.clock.Now()); err != nil {
			t.Fatalf("%s: a verifier holding the old JWKS rejects the new token: %v", c.kind, err)
		}
		_, body, _ := e.jwks("jwks/" + name)
		if _, err := verifyJose(t, tok.Data["token"].(string), body, e.clock.Now()); err != nil {
			t.Fatalf("%s: the plugin's JWKS does not verify it: %v", c.kind, err)
		}
		if !slices.Contains(kidsOf(t, body), want) {
			t.Fatalf("%s: JWKS %s lacks %s", c.kind, body, want)
		}
	}
	if !strings.Contains(e.logs.String(), `"@message":"key imported"`) {
		t.Fatal("no import logged")
	}
}

// An imported key retires on schedule, its private half is deleted at that
// retirement (it is never rolled back to), its kid leaves the JWKS at its
// remove_at, and the mount's history then refuses its key and its kid.
func TestImportedKeyRetiresAndNeverReturns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	key := newTestKey(t, "P-256")
	tp := thumbprintOf(t, key.Public())
	e.mustWrite("keys/legacy/import", e.importData(key, map[string]any{"algorithm": "ES256", "kid": "old-1", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"}))
	start := e.clock.Now()
	e.clock.Advance(time.Hour + time.Second)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if _, ok := dump(t, e.storage)[privatePath("legacy", tp)]; ok {
		t.Fatal("the imported key's private half outlived its retirement")
	}
	resp, err := e.write("keys/legacy/rollback", nil)
	expect400(t, resp, err, "rollback")
	_, body, _ := e.jwks("jwks")
	if !slices.Contains(kidsOf(t, body), "old-1") {
		t.Fatal("the retired imported key left the JWKS before its remove_at")
	}
	e.clock.Advance(start.Add(3*time.Hour + time.Second).Sub(e.clock.Now()))
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	_, body, _ = e.jwks("jwks")
	if slices.Contains(kidsOf(t, body), "old-1") {
		t.Fatal("the imported key is still published after its remove_at")
	}
	h, err := readHistory(context.Background(), e.storage)
	if err != nil || len(h.Adopted) != 1 || h.Adopted[0].KID != "old-1" || h.Adopted[0].Thumbprint != tp || h.Adopted[0].Fate != fateRemoved {
		t.Fatalf("history %+v %v", h, err)
	}
	// The same key under a new kid, and a new key under the old kid.
	resp, err = e.write("keys/again/import", e.importData(key, map[string]any{"algorithm": "ES256", "kid": "old-2"}))
	expect400(t, resp, err, "ciphertext:", "removed", "never comes back")
	resp, err = e.write("keys/again/import", e.importData(newTestKey(t, "P-256"), map[string]any{"algorithm": "ES256", "kid": "old-1"}))
	expect400(t, resp, err, "kid:", "never used again")
}

// Every bad import is a 400 that names the field and the rule, and stores
// nothing; no refusal carries anything of the key.
func TestImportRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	e.setupRing("live", "ES256", nil)
	pub := e.wrappingPub()
	rsaKey := newTestKey(t, "RSA-2048")
	ecKey := newTestKey(t, "P-256")
	small := newTestKey(t, "RSA-1024")
	revokedKey := newTestKey(t, "Ed25519")
	e.mustWrite("keys/gone/import", e.importData(revokedKey, map[string]any{"algorithm": "EdDSA", "kid": "compromised"}))
	e.mustWrite("keys/gone/rotate", map[string]any{"revoke_active": true})
	e.mustWrite("keys/gone", map[string]any{"verification_ttl": "2h"})
	e.clock.Advance(25 * time.Hour) // the tombstone is forgotten into the history
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if g := e.ring("gone"); len(g.Keys) > 0 && g.Keys[0].KID == "compromised" {
		t.Fatal("the revoked key's tombstone should be forgotten by now")
	}
	liveKID := e.read("keys/live").Data["active_kid"].(string)
	wrap := func(k crypto.Signer) string { return wrapForImport(t, pub, mustPKCS8(t, k)) }
	ct := wrap(rsaKey)
	raw, _ := base64.StdEncoding.DecodeString(ct)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x40
		return base64.StdEncoding.EncodeToString(b)
	}
	// What a sender outside vault transit import could make: an AES-128
	// ephemeral key (KWP takes it, the format does not), a key of one AES
	// block (KWP, but under the library's bound), a KWP part that is not
	// whole 64-bit blocks.
	odd := func(aesKey, kwpPart []byte) string {
		ct, err := importCiphertext(pub, aesKey, kwpPart)
		if err != nil {
			t.Fatal(err)
		}
		return ct
	}
	aes128, aes256 := make([]byte, 16), make([]byte, 32)
	rand.Read(aes128)
	rand.Read(aes256)
	der := mustPKCS8(t, ecKey)
	wrapped256 := kwpWrapForTest(aes256, der)
	x25519, _ := ecdh.X25519().GenerateKey(rand.Reader)
	xder, _ := x509.MarshalPKCS8PrivateKey(x25519)
	pkcs1 := x509.MarshalPKCS1PrivateKey(newTestKey(t, "RSA-2048").(*rsa.PrivateKey))
	secrets := []string{base64.StdEncoding.EncodeToString(mustPKCS8(t, rsaKey))[40:80], base64.StdEncoding.EncodeToString(mustPKCS8(t, ecKey))[40:80]}
	cases := []struct {
		name  string
		path  string
		data  map[string]any
		field string
		also  []string
	}{
		{"no algorithm", "keys/n/import", map[string]any{"ciphertext": ct}, "algorithm", []string{"required"}},
		{"wrong algorithm", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "ES256"}, "algorithm", []string{"RSA-2048", "RS256"}},
		{"EC key for RS256", "keys/n/import", map[string]any{"ciphertext": wrap(ecKey), "algorithm": "RS256"}, "algorithm", []string{"EC P-256", "ES256"}},
		{"wrong curve", "keys/n/import", map[string]any{"ciphertext": wrap(ecKey), "algorithm": "ES384"}, "algorithm", []string{"P-256"}},
		{"HMAC", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "HS256"}, "algorithm", []string{"not supported"}},
		{"small RSA", "keys/n/import", map[string]any{"ciphertext": wrap(small), "algorithm": "RS256"}, "ciphertext", []string{"1024 bits", "2048"}},
		{"X25519 cannot sign", "keys/n/import", map[string]any{"ciphertext": wrapForImport(t, pub, xder), "algorithm": "EdDSA"}, "ciphertext", []string{"cannot sign"}},
		{"not a key", "keys/n/import", map[string]any{"ciphertext": wrapForImport(t, pub, []byte("this is not a key at all")), "algorithm": "RS256"}, "ciphertext", []string{"PKCS#8"}},
		{"corrupted OAEP part", "keys/n/import", map[string]any{"ciphertext": flip(5), "algorithm": "RS256"}, "ciphertext", []string{"another mount"}},
		{"corrupted KWP part", "keys/n/import", map[string]any{"ciphertext": flip(len(raw) - 3), "algorithm": "RS256"}, "ciphertext", []string{"integrity"}},
		{"truncated", "keys/n/import", map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(raw[:len(raw)-8]), "algorithm": "RS256"}, "ciphertext", []string{"integrity"}},
		{"AES-128 ephemeral key", "keys/n/import", map[string]any{"ciphertext": odd(aes128, kwpWrapForTest(aes128, der)), "algorithm": "ES256"}, "ciphertext", []string{"16-byte", "AES-256"}},
		{"a key of one AES block", "keys/n/import", map[string]any{"ciphertext": odd(aes256, kwpWrapForTest(aes256, der[:8])), "algorithm": "ES256"}, "ciphertext", []string{"integrity"}},
		{"KWP part not whole blocks", "keys/n/import", map[string]any{"ciphertext": odd(aes256, wrapped256[:len(wrapped256)-3]), "algorithm": "ES256"}, "ciphertext", []string{"integrity"}},
		{"another mount's wrapping key", "keys/n/import", map[string]any{"ciphertext": wrapForImport(t, &testWrappingKey(1).PublicKey, mustPKCS8(t, rsaKey)), "algorithm": "RS256"}, "ciphertext", []string{"another mount"}},
		{"plain PKCS#8", "keys/n/import", map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(mustPKCS8(t, rsaKey)), "algorithm": "RS256"}, "ciphertext", []string{"not wrapped"}},
		{"plain PEM", "keys/n/import", map[string]any{"ciphertext": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, ecKey)})), "algorithm": "ES256"}, "ciphertext", []string{"not wrapped"}},
		{"not base64", "keys/n/import", map[string]any{"ciphertext": "%%%", "algorithm": "RS256"}, "ciphertext", []string{"base64"}},
		{"too short", "keys/n/import", map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(raw[:100]), "algorithm": "RS256"}, "ciphertext", []string{"too short"}},
		{"empty", "keys/n/import", map[string]any{"ciphertext": "", "algorithm": "RS256"}, "ciphertext", []string{"required"}},
		{"existing ring", "keys/live/import", map[string]any{"ciphertext": ct, "algorithm": "RS256"}, "name", []string{"exists"}},
		{"kid live in another ring", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "kid": liveKID}, "kid", []string{"unique"}},
		{"previously revoked kid", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "kid": "compromised"}, "kid", []string{"revoked", "never used again"}},
		{"previously revoked key under a new kid", "keys/n/import", map[string]any{"ciphertext": wrap(revokedKey), "algorithm": "EdDSA", "kid": "fresh"}, "ciphertext", []string{"revoked", "never comes back"}},
		{"kid with a space", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "kid": "a b"}, "kid", []string{"characters"}},
		{"kid too long", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "kid": strings.Repeat("k", 129)}, "kid", []string{"128"}},
		{"empty kid", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "kid": ""}, "kid", []string{"empty"}},
		{"bad settings", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "rotation_period": "5s"}, "rotation_period", nil},
		{"bad rsa_bits", "keys/n/import", map[string]any{"ciphertext": ct, "algorithm": "RS256", "rsa_bits": 1024}, "rsa_bits", nil},
		{"unknown field (transit's type)", "keys/n/import", map[string]any{"ciphertext": ct, "type": "rsa-2048"}, "type", []string{"unknown field"}},
	}
	// PKCS#1 is accepted, as transit accepts it.
	e.mustWrite("keys/pkcs1/import", map[string]any{"ciphertext": wrapForImport(t, pub, pkcs1), "algorithm": "RS256", "kid": "from-pkcs1"})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := dump(t, e.storage)
			resp, err := e.write(c.path, c.data)
			expect400(t, resp, err, append([]string{c.field + ":"}, c.also...)...)
			if !strings.HasPrefix(resp.Error().Error(), c.field+":") {
				t.Fatalf("message %q does not start with the field", resp.Error())
			}
			for _, s := range secrets {
				if strings.Contains(resp.Error().Error(), s) {
					t.Fatal("the refusal carries key material")
				}
			}
			sameStorage(t, before, dump(t, e.storage))
		})
	}
	for _, s := range secrets {
		if strings.Contains(e.logs.String(), s) {
			t.Fatal("the log carries key material")
		}
	}
}

// With no wrapping key yet, nothing can have been wrapped for the mount;
// the first read makes one key pair, stored seal-wrapped, and every later
// read (also after a restart) gives the same key.
func TestWrappingKeyMadeOnceAndSealWrapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	made := 0
	e.b.wrapKeys = func() (*rsa.PrivateKey, error) { made++; return testWrappingKey(0), nil }
	resp, err := e.write("keys/n/import", map[string]any{"ciphertext": wrapForImport(t, &testWrappingKey(0).PublicKey, mustPKCS8(t, newTestKey(t, "P-256"))), "algorithm": "ES256"})
	expect400(t, resp, err, "ciphertext:", "wrapping_key first")
	if made != 0 {
		t.Fatal("an import made the wrapping key")
	}
	first := e.read("wrapping_key").Data["public_key"]
	second := e.read("wrapping_key").Data["public_key"]
	again := e.restart()
	again.b.wrapKeys = func() (*rsa.PrivateKey, error) { made++; return testWrappingKey(1), nil }
	third := again.read("wrapping_key").Data["public_key"]
	if made != 1 || first != second || first != third {
		t.Fatalf("made %d wrapping keys; reads differ: %v", made, first != second || first != third)
	}
	stored := dump(t, e.storage)
	if _, ok := stored[wrappingPath]; !ok {
		t.Fatalf("no entry at %s", wrappingPath)
	}
	declared := e.b.SpecialPaths().SealWrapStorage
	if !slices.Contains(declared, wrappingPrefix) || !slices.Contains(declared, privatePrefix) {
		t.Fatalf("SealWrapStorage = %v lacks %s", declared, wrappingPrefix)
	}
	if strings.Contains(fmt.Sprint(first), "PRIVATE") {
		t.Fatal("the wrapping key read shows a private key")
	}
}

// A plugin that reads a stored private half under the wrong thumbprint
// refuses to sign with it.
func TestImportedPrivateHalfCheckedByThumbprint(t *testing.T) {
	t.Parallel()
	key := newTestKey(t, "P-256")
	der := mustPKCS8(t, key)
	tp := thumbprintOf(t, key.Public())
	if _, err := parsePrivateAs(der, "legacy", tp, "ES256"); err != nil {
		t.Fatal(err)
	}
	if _, err := parsePrivateAs(der, "legacy", "legacy", "ES256"); err == nil {
		t.Fatal("a private half was accepted for a thumbprint it does not have")
	}
	// Read as a generated key's (by kid), an imported key's half is refused.
	if _, err := parsePrivate(der, "legacy", "ES256"); err == nil {
		t.Fatal("an imported key's private half was accepted by its chosen kid")
	}
	if _, err := parsePrivate(der, tp, "ES256"); err != nil {
		t.Fatal(err)
	}
}

var _ = logical.ErrInvalidRequest

// publicJWKMap is key's public JWK as a request would carry it, with extra
// members.
func publicJWKMap(t testing.TB, pub crypto.PublicKey, kid, alg string, extra map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func publicPEM(t testing.TB, pub crypto.PublicKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// A trusted key (JWK or PEM) is served in the JWKS, rebuilt from the parsed
// key (members the request added are not echoed), from its write until its
// expires_at and not a second longer, never signs, and can be revoked
// early, after which neither its kid nor its key comes back.
func TestTrustPublishesForABoundedTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	e.mustWrite("keys/legacy/import", e.importData(newTestKey(t, "RSA-2048"), map[string]any{"algorithm": "RS256", "kid": "legacy-2025", "rotation_period": "24h", "verification_ttl": "2h"}))
	old1 := newTestKey(t, "RSA-2048")
	old2 := newTestKey(t, "P-256")
	now := e.clock.Now().Unix()
	resp := e.mustWrite("keys/legacy/trust", map[string]any{
		"jwk":        publicJWKMap(t, old1.Public(), "legacy-2024", "RS256", map[string]any{"x5u": "https://evil.example/x", "ext": true}),
		"expires_at": now + 3600,
	})
	if resp.Data["kid"] != "legacy-2024" || resp.Data["thumbprint"] != thumbprintOf(t, old1.Public()) || resp.Data["expires_at"] != now+3600 {
		t.Fatalf("trust answered %v", resp.Data)
	}
	// The same key as a JSON string, and a PEM key with kid and alg.
	e.mustWrite("keys/legacy/trust", map[string]any{"pem": publicPEM(t, old2.Public()), "kid": "ec-2023", "alg": "ES256", "expires_at": fmt.Sprint(now + 7200)})
	_, body, _ := e.jwks("jwks/legacy")
	if got := kidsOf(t, body); !slices.Contains(got, "legacy-2024") || !slices.Contains(got, "ec-2023") || !slices.Contains(got, "legacy-2025") {
		t.Fatalf("JWKS %v", got)
	}
	if strings.Contains(string(body), "x5u") || strings.Contains(string(body), "ext") {
		t.Fatalf("the JWKS echoes members of the request: %s", body)
	}
	// Tokens of the old issuer verify through the plugin's JWKS.
	oldToken := func(k crypto.Signer, kid, alg string) string {
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: k, KeyID: kid}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := s.Sign([]byte(fmt.Sprintf(`{"iss":"https://vault.example.com/v1/jwt","exp":%d}`, now+7000)))
		if err != nil {
			t.Fatal(err)
		}
		c, _ := obj.CompactSerialize()
		return c
	}
	if _, err := verifyJose(t, oldToken(old1, "legacy-2024", "RS256"), body, e.clock.Now()); err != nil {
		t.Fatalf("a token of the old issuer does not verify: %v", err)
	}
	r := e.read("keys/legacy").Data
	if tk := r["trusted_keys"].([]map[string]any); len(tk) != 2 || r["active_kid"] != "legacy-2025" {
		t.Fatalf("read %v", r)
	}
	// Up to a second before expires_at it is served; at expires_at it is not.
	e.clock.Advance(3599 * time.Second)
	_, body, _ = e.jwks("jwks")
	if !slices.Contains(kidsOf(t, body), "legacy-2024") {
		t.Fatal("the trusted key left before its expires_at")
	}
	if _, _, data := e.jwks("jwks"); !strings.Contains(data[logical.HTTPCacheControlHeader].(string), "max-age=1,") {
		t.Fatalf("max-age runs past the trusted key's expiry: %v", data[logical.HTTPCacheControlHeader])
	}
	e.clock.Advance(time.Second)
	_, body, _ = e.jwks("jwks")
	if slices.Contains(kidsOf(t, body), "legacy-2024") || !slices.Contains(kidsOf(t, body), "ec-2023") {
		t.Fatalf("at its expires_at the trusted key is still served: %v", kidsOf(t, body))
	}
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if len(e.ring("legacy").Trusted) != 1 {
		t.Fatal("maintenance kept an expired trusted key")
	}
	// Revoked early: out at once, and never back.
	rv := e.mustWrite("keys/legacy/revoke", map[string]any{"kid": "ec-2023"})
	if rv.Data["revoked"] != "ec-2023" || rv.Data["active_kid"] != "legacy-2025" {
		t.Fatalf("revoke answered %v", rv.Data)
	}
	_, body, _ = e.jwks("jwks")
	if slices.Contains(kidsOf(t, body), "ec-2023") {
		t.Fatal("a revoked trusted key is still served")
	}
	h, _ := readHistory(context.Background(), e.storage)
	fates := map[string]string{}
	for _, rec := range h.Adopted {
		fates[rec.KID] = rec.Origin + " " + rec.Fate
	}
	if fates["legacy-2024"] != "trusted removed" || fates["ec-2023"] != "trusted revoked" {
		t.Fatalf("history %v", fates)
	}
	later := e.clock.Now().Unix() + 600
	resp2, err := e.write("keys/legacy/trust", map[string]any{"pem": publicPEM(t, old2.Public()), "kid": "ec-2023b", "alg": "ES256", "expires_at": later})
	expect400(t, resp2, err, "pem:", "revoked", "never comes back")
	resp2, err = e.write("keys/legacy/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "P-256").Public(), "legacy-2024", "ES256", nil), "expires_at": later})
	expect400(t, resp2, err, "kid:", "never used again")
}

// Every bad trust request is a 400 naming the field, stores nothing, and
// never repeats the private material it refuses.
func TestTrustRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	e.setupRing("k", "ES256", nil)
	ringKID := e.read("keys/k").Data["active_kid"].(string)
	now := e.clock.Now().Unix()
	priv := newTestKey(t, "RSA-2048").(*rsa.PrivateKey)
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: "with-private", Algorithm: "RS256"})
	var privMap map[string]any
	_ = json.Unmarshal(privJWK, &privMap)
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, priv)}))
	ecPriv := newTestKey(t, "P-256").(*ecdsa.PrivateKey)
	ecD, err := ecPriv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	ecPrivJWK := publicJWKMap(t, ecPriv.Public(), "ec-private", "ES256", map[string]any{"d": base64.RawURLEncoding.EncodeToString(ecD)})
	pub := newTestKey(t, "RSA-2048").Public()
	good := func(extra map[string]any) map[string]any {
		m := map[string]any{"jwk": publicJWKMap(t, pub, "old", "RS256", nil), "expires_at": now + 3600}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	e.mustWrite("keys/full/import", e.importData(newTestKey(t, "P-256"), map[string]any{"algorithm": "ES256"}))
	for i := 0; i < maxTrustedKeys; i++ {
		e.mustWrite("keys/full/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "P-256").Public(), fmt.Sprintf("full-%d", i), "ES256", nil), "expires_at": now + 3600})
	}
	small := newTestKey(t, "RSA-1024")
	secrets := []string{
		base64.RawURLEncoding.EncodeToString(priv.D.Bytes())[:40],
		base64.RawURLEncoding.EncodeToString(priv.Primes[0].Bytes())[:40],
		base64.StdEncoding.EncodeToString(mustPKCS8(t, priv))[40:80],
		base64.RawURLEncoding.EncodeToString(ecD)[:30],
	}
	cases := []struct {
		name  string
		data  map[string]any
		field string
		also  []string
	}{
		{"private JWK", map[string]any{"jwk": privMap, "expires_at": now + 3600}, "jwk", []string{"private key member(s) d, dp, dq, p, q, qi"}},
		{"private JWK as text", map[string]any{"jwk": string(privJWK), "expires_at": now + 3600}, "jwk", []string{"private"}},
		{"EC d", map[string]any{"jwk": ecPrivJWK, "expires_at": now + 3600}, "jwk", []string{"d;"}},
		{"private PEM", map[string]any{"pem": privPEM, "kid": "x", "alg": "RS256", "expires_at": now + 3600}, "pem", []string{"private key"}},
		{"symmetric key", map[string]any{"jwk": map[string]any{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, "expires_at": now + 3600}, "jwk", []string{"k"}},
		{"kid collides with a ring key", good(map[string]any{"kid": ringKID, "jwk": publicJWKMap(t, pub, "", "RS256", nil)}), "kid", []string{"unique"}},
		{"key of a ring key", map[string]any{"jwk": publicJWKMap(t, mustJWK(t, e.read("jwks/k")).Key, "other", "ES256", nil), "expires_at": now + 3600}, "jwk", []string{"already key"}},
		{"kid mismatch", good(map[string]any{"kid": "another"}), "kid", []string{"differs"}},
		{"alg mismatch", good(map[string]any{"alg": "PS256"}), "alg", []string{"differs"}},
		{"alg for another key type", good(map[string]any{"jwk": publicJWKMap(t, pub, "old", "ES256", nil)}), "alg", []string{"RSA-2048"}},
		{"small RSA", good(map[string]any{"jwk": publicJWKMap(t, small.Public(), "old", "RS256", nil)}), "jwk", []string{"1024 bits"}},
		{"no kid", good(map[string]any{"jwk": publicJWKMap(t, pub, "", "RS256", nil)}), "kid", []string{"required"}},
		{"no alg", good(map[string]any{"jwk": publicJWKMap(t, pub, "old", "", nil)}), "alg", []string{"required"}},
		{"both jwk and pem", good(map[string]any{"pem": publicPEM(t, pub)}), "jwk", []string{"one of the two"}},
		{"neither", map[string]any{"expires_at": now + 3600}, "jwk", []string{"one of the two"}},
		{"no expiry", good(map[string]any{"expires_at": nil}), "expires_at", []string{"required"}},
		{"expiry in the past", good(map[string]any{"expires_at": now}), "expires_at", []string{"not in the future"}},
		{"expiry past the bound", good(map[string]any{"expires_at": now + maxTrustPeriodSeconds + 1}), "expires_at", []string{"90 days"}},
		{"PEM without kid", map[string]any{"pem": publicPEM(t, pub), "alg": "RS256", "expires_at": now + 3600}, "kid", []string{"required"}},
		{"PEM certificate", map[string]any{"pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "kid": "c", "alg": "RS256", "expires_at": now + 3600}, "pem", []string{"certificate"}},
		{"two PEM blocks", map[string]any{"pem": publicPEM(t, pub) + publicPEM(t, pub), "kid": "c", "alg": "RS256", "expires_at": now + 3600}, "pem", []string{"more than one"}},
		{"not PEM", map[string]any{"pem": "hello", "kid": "c", "alg": "RS256", "expires_at": now + 3600}, "pem", []string{"not a PEM"}},
		{"EC point off the curve", map[string]any{"jwk": map[string]any{"kty": "EC", "crv": "P-256", "kid": "bad", "alg": "ES256", "x": base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "y": base64.RawURLEncoding.EncodeToString(append(make([]byte, 31), 1))}, "expires_at": now + 3600}, "jwk", []string{"not a point"}},
		{"use enc", good(map[string]any{"jwk": publicJWKMap(t, pub, "old", "RS256", map[string]any{"use": "enc"})}), "jwk", []string{"use"}},
		{"no ring", good(nil), "name", []string{"no key ring"}},
		{"too many trusted keys", good(nil), "jwk", []string{"already trusts 10"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := "keys/k/trust"
			switch c.name {
			case "no ring":
				path = "keys/none/trust"
			case "too many trusted keys":
				path = "keys/full/trust"
			}
			before := dump(t, e.storage)
			resp, err := e.write(path, c.data)
			expect400(t, resp, err, append([]string{c.field + ":"}, c.also...)...)
			if !strings.HasPrefix(resp.Error().Error(), c.field+":") {
				t.Fatalf("message %q does not start with the field", resp.Error())
			}
			for _, s := range secrets {
				if strings.Contains(resp.Error().Error(), s) {
					t.Fatalf("the refusal repeats private material: %s", resp.Error())
				}
			}
			sameStorage(t, before, dump(t, e.storage))
		})
	}
	for _, s := range secrets {
		if strings.Contains(e.logs.String(), s) {
			t.Fatal("the log carries private material")
		}
	}
}

// mustJWK is the first key of a JWKS response.
func mustJWK(t *testing.T, resp *logical.Response) jose.JSONWebKey {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %v", err)
	}
	return set.Keys[0]
}

// Trusted keys count against the mount's 50 KiB and the ring's 40 keys:
// once either bound would be passed, trusting one more is refused, nothing is
// stored, and what is stored stays within both.
func TestTrustCountsAgainstTheBounds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 1})
	now := e.clock.Now().Unix()
	trust := func(ring string, i int) (*logical.Response, error) {
		k, err := sharedKeys.get("trust/RSA-2048", "RS256", 2048, i)
		if err != nil {
			t.Fatal(err)
		}
		return e.write("keys/"+ring+"/trust", map[string]any{"jwk": publicJWKMap(t, k.Private.Public(), fmt.Sprintf("%s-t%d", ring, i), "RS256", nil), "expires_at": now + 3600})
	}
	// The JWKS bound: 10s ES256 rings fill most of the mount.
	for i := 0; i < 9; i++ {
		e.mustWrite(fmt.Sprintf("keys/r%d", i), map[string]any{"algorithm": "ES256", "rotation_period": "10s", "publish_lead": "10s", "verification_ttl": "90s"})
	}
	snap, _ := e.b.load(context.Background(), e.storage)
	used := 0
	for _, r := range snap.rings {
		used += reserve(r, now)
	}
	accepted, refusal := 0, ""
	for i := 0; i < maxTrustedKeys; i++ {
		resp, err := trust("r0", i)
		if err != nil || resp.IsError() {
			refusal = respErr(resp)
			break
		}
		accepted++
	}
	t.Logf("9 rings reserve %d bytes; %d RSA-2048 keys trusted, then: %s", used, accepted, refusal)
	if accepted == 0 || !strings.Contains(refusal, "jwk: ring \"r0\" would need up to") {
		t.Fatalf("the JWKS bound did not refuse a trusted key (accepted %d): %s", accepted, refusal)
	}
	snap, _ = e.b.load(context.Background(), e.storage)
	total := 0
	for _, r := range snap.rings {
		total += reserve(r, now)
	}
	if total > maxJWKSBytes {
		t.Fatalf("the rings reserve %d bytes, above %d", total, maxJWKSBytes)
	}
	// The ring bound: forced rotations bring a ring near 40 keys; trusted
	// keys then pass it.
	e2 := newEnv(t)
	e2.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 1})
	e2.mustWrite("keys/q", map[string]any{"algorithm": "EdDSA", "rotation_period": "10s", "publish_lead": "10s", "verification_ttl": "90s"})
	for i := 0; i < 100; i++ {
		resp, err := e2.write("keys/q/rotate", map[string]any{"force": true})
		if err != nil || resp.IsError() {
			break
		}
	}
	e = e2
	accepted, refusal = 0, ""
	for i := 0; i < maxTrustedKeys; i++ {
		resp, err := trust("q", 20+i)
		if err != nil || resp.IsError() {
			refusal = respErr(resp)
			break
		}
		accepted++
	}
	keys, _ := peak(e2.ring("q"), now)
	t.Logf("after forced rotations, %d trusted keys, then: %s; peak %d keys", accepted, refusal, keys)
	if !strings.Contains(refusal, "would publish 41 keys at once, above the limit of 40") || keys > maxRingKeys {
		t.Fatalf("the ring bound did not hold: %s (peak %d)", refusal, keys)
	}
}

// The history keeps every adopted key and the last maxHistoryRevoked
// revoked and maxHistoryRemoved removed generated keys, oldest forgotten
// first; at its bounds, with the longest kids and ring names, the entry
// stays under 256 KiB.
func TestHistoryBoundHolds(t *testing.T) {
	t.Parallel()
	h := &historyEntry{Version: schemaVersion}
	big := int64(1) << 62
	ring := strings.Repeat("r", 5000)
	old := &ringEntry{Name: ring}
	for i := 0; i < maxAdopted; i++ {
		kid := fmt.Sprintf("%0*d", maxKIDLen, i)
		old.Keys = append(old.Keys, signingKey{KID: kid, Thumbprint: strings.Repeat("t", 43), Imported: true, RevokedAt: big})
	}
	for i := 0; i < 2*maxHistoryRevoked; i++ {
		old.Keys = append(old.Keys, signingKey{KID: fmt.Sprintf("rev-%039d", i), RevokedAt: big})
	}
	for i := 0; i < 2*maxHistoryRemoved; i++ {
		old.Keys = append(old.Keys, signingKey{KID: fmt.Sprintf("rem-%039d", i)})
	}
	h.add(departed(old, nil, big))
	if len(h.Adopted) != maxAdopted || len(h.Revoked) != maxHistoryRevoked || len(h.Removed) != maxHistoryRemoved {
		t.Fatalf("kept %d adopted, %d revoked, %d removed", len(h.Adopted), len(h.Revoked), len(h.Removed))
	}
	if h.Revoked[0].KID != fmt.Sprintf("rev-%039d", maxHistoryRevoked) || h.Removed[0].KID != fmt.Sprintf("rem-%039d", maxHistoryRemoved) {
		t.Fatalf("the oldest were not forgotten first: %s, %s", h.Revoked[0].KID, h.Removed[0].KID)
	}
	if len(h.Adopted[0].Ring) != maxHistoryRing {
		t.Fatalf("a record keeps a ring name of %d bytes", len(h.Adopted[0].Ring))
	}
	b, _ := json.Marshal(h)
	t.Logf("the history at its bounds: %d bytes", len(b))
	if len(b) > 256*1024 {
		t.Fatalf("the history at its bounds is %d bytes, above 256 KiB", len(b))
	}
	// Recording keys it holds again (a retried write) changes nothing.
	again := &ringEntry{Name: ring, Keys: append(append([]signingKey(nil), old.Keys[:3]...), old.Keys[len(old.Keys)-3:]...)}
	if h.add(departed(again, nil, big)) {
		t.Fatal("recording known keys again changed the history")
	}
}

// Reads and metrics show which keys were adopted: the counters by origin,
// the imported key's seconds to retirement while it signs, each trusted
// key's seconds to expiry and its age under state "trusted", and the
// rotation the import made.
func TestAdoptionMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	e.mustWrite("keys/legacy/import", e.importData(newTestKey(t, "P-256"), map[string]any{"algorithm": "ES256", "kid": "legacy-1", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"}))
	now := e.clock.Now().Unix()
	e.mustWrite("keys/legacy/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "Ed25519").Public(), "legacy-0", "EdDSA", nil), "expires_at": now + 1800})
	e.clock.Advance(10 * time.Minute)
	series := func(name string) []map[string]any {
		s, _ := e.read("metrics").Data[name].([]map[string]any)
		return s
	}
	find := func(name string, labels map[string]string) (float64, bool) {
	next:
		for _, s := range series(name) {
			got := s["labels"].(map[string]string)
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return s["value"].(float64), true
		}
		return 0, false
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"jwt_rotor_keys_adopted_total", map[string]string{"ring": "legacy", "origin": "imported"}, 1},
		{"jwt_rotor_keys_adopted_total", map[string]string{"ring": "legacy", "origin": "trusted"}, 1},
		{"jwt_rotor_rotations_total", map[string]string{"ring": "legacy", "reason": "imported"}, 1},
		{"jwt_rotor_imported_key_seconds_to_retirement", map[string]string{"ring": "legacy", "kid": "legacy-1"}, 3000},
		{"jwt_rotor_trusted_key_seconds_to_expiry", map[string]string{"ring": "legacy", "kid": "legacy-0"}, 1200},
		{"jwt_rotor_key_age_seconds", map[string]string{"ring": "legacy", "kid": "legacy-0", "state": "trusted"}, 600},
		{"jwt_rotor_published_keys", map[string]string{"ring": "legacy"}, 3},
	} {
		if got, ok := find(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// Once the imported key retires, its gauge goes; once the trusted key
	// expires, its gauges go.
	e.clock.Advance(51 * time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if _, ok := find("jwt_rotor_imported_key_seconds_to_retirement", map[string]string{"kid": "legacy-1"}); ok {
		t.Error("the retired imported key still has a seconds-to-retirement series")
	}
	if _, ok := find("jwt_rotor_trusted_key_seconds_to_expiry", map[string]string{"kid": "legacy-0"}); ok {
		t.Error("the expired trusted key still has a series")
	}
}
