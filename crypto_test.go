package jwtrotor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// jwkSize is what the bounds charge for a key not made yet: it must never be
// less than the real size, or a write the bounds allowed could push the JWKS
// past them.
func TestJWKSizeIsAnUpperBound(t *testing.T) {
	t.Parallel()
	cases := []struct {
		alg  string
		bits int
	}{{"ES256", 0}, {"ES384", 0}, {"ES512", 0}, {"EdDSA", 0}, {"RS256", 2048}, {"PS384", 3072}, {"RS512", 4096}}
	keys := sharedKeys.source()
	for _, c := range cases {
		for i := 0; i < 3; i++ {
			g, err := keys(c.alg, c.bits)
			if err != nil {
				t.Fatal(err)
			}
			if len(g.PublicJWK) > jwkSize(c.alg, c.bits) {
				t.Fatalf("%s/%d: a JWK of %d bytes, estimated at %d", c.alg, c.bits, len(g.PublicJWK), jwkSize(c.alg, c.bits))
			}
			if len(g.PublicJWK) < jwkSize(c.alg, c.bits)*3/4 {
				t.Fatalf("%s/%d: estimate %d is far above the real %d bytes (the bounds would waste room)", c.alg, c.bits, jwkSize(c.alg, c.bits), len(g.PublicJWK))
			}
		}
	}
}

// A stored private half is checked against the kid it is stored under, so
// a mixed-up entry can never sign.
func TestParsePrivateChecksTheKid(t *testing.T) {
	t.Parallel()
	a, err := generateKey("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := generateKey("ES256", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parsePrivate(a.PKCS8, a.KID, "ES256"); err != nil {
		t.Fatal(err)
	}
	if _, err := parsePrivate(a.PKCS8, b.KID, "ES256"); err == nil {
		t.Fatal("a private half stored under another kid was accepted")
	}
}

// The plugin's own key generator (test backends draw from the test key pool
// instead) gives each ring keys of the ring's algorithm and size, all
// different: an RSA modulus of rsa_bits, an EC key on the algorithm's
// curve, an Ed25519 key; and what each ring signs verifies against the JWKS.
func TestRingKeysFromThePluginsGenerator(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.b.keys = newBackend(e.clock).keys // what a plugin process uses
	cases := []struct {
		alg  string
		bits int
		is   func(crypto.PublicKey) bool
	}{
		{"RS384", 2048, func(k crypto.PublicKey) bool { r, ok := k.(*rsa.PublicKey); return ok && r.N.BitLen() == 2048 }},
		{"ES384", 0, func(k crypto.PublicKey) bool { c, ok := k.(*ecdsa.PublicKey); return ok && c.Curve == elliptic.P384() }},
		{"EdDSA", 0, func(k crypto.PublicKey) bool { _, ok := k.(ed25519.PublicKey); return ok }},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		extra := map[string]any{}
		if c.bits != 0 {
			extra["rsa_bits"] = c.bits
		}
		name := strings.ToLower(c.alg)
		e.setupRing(name, c.alg, extra)
		e.mustWrite("roles/"+name, map[string]any{"key": name, "audiences": "api"})
		_, body, _ := e.jwks("jwks/" + name)
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil || len(set.Keys) < 2 {
			t.Fatalf("%s: JWKS %s: %v", c.alg, body, err)
		}
		for _, k := range set.Keys {
			if k.Algorithm != c.alg || !c.is(k.Key) || seen[k.KeyID] {
				t.Fatalf("%s ring: key %s is a %T for %s (or a repeated kid)", c.alg, k.KeyID, k.Key, k.Algorithm)
			}
			seen[k.KeyID] = true
		}
		resp := e.mustWrite("sign/"+name, nil)
		if _, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now()); err != nil {
			t.Fatalf("%s: %v", c.alg, err)
		}
	}
}
