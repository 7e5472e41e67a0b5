package jwtrotor

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Tests of path_import.go: keys/<name>/import creates a ring whose active
// key is an existing issuer's key, under its kid, and refuses what it must.

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
