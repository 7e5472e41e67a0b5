package jwtrotor

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of path_trust.go: keys/<name>/trust publishes an old public key of
// an adopted issuer for a bounded time, within the ring's and the mount's
// bounds, and refuses what it must.

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
