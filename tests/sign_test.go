package tests

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

const apiAudience = "https://api.example.com"

// TestSignAndVerifyAlgorithms signs over HTTP with rings of several
// algorithms and verifies every token with two independent libraries
// against the JWKS fetched without a token.
func TestSignAndVerifyAlgorithms(t *testing.T) {
	t.Parallel()
	m := newMount(t, "sign", nil)

	cases := []struct {
		ring      string
		settings  map[string]any
		alg       string
		tokenType string // role's token_type; "" leaves the default
		wantTyp   string
		checkKey  func(t *testing.T, key any)
	}{
		{
			ring: "es256", settings: map[string]any{"algorithm": "ES256"}, alg: "ES256", wantTyp: "JWT",
			checkKey: func(t *testing.T, key any) {
				k, ok := key.(*ecdsa.PublicKey)
				if !ok || k.Curve != elliptic.P256() {
					t.Errorf("ES256 JWK holds %T, want a P-256 public key", key)
				}
			},
		},
		{
			ring: "eddsa", settings: map[string]any{"algorithm": "EdDSA"}, alg: "EdDSA", wantTyp: "JWT",
			checkKey: func(t *testing.T, key any) {
				if _, ok := key.(ed25519.PublicKey); !ok {
					t.Errorf("EdDSA JWK holds %T, want an Ed25519 public key", key)
				}
			},
		},
		{
			ring: "rs256", settings: map[string]any{"algorithm": "RS256", "rsa_bits": 2048}, alg: "RS256", wantTyp: "JWT",
			checkKey: func(t *testing.T, key any) {
				k, ok := key.(*rsa.PublicKey)
				if !ok || k.N.BitLen() != 2048 {
					t.Errorf("RS256 JWK holds %T, want a 2048-bit RSA public key", key)
				}
			},
		},
		{
			ring: "ps384", settings: map[string]any{"algorithm": "PS384", "rsa_bits": 3072}, alg: "PS384",
			tokenType: "at+jwt", wantTyp: "at+jwt",
			checkKey: func(t *testing.T, key any) {
				k, ok := key.(*rsa.PublicKey)
				if !ok || k.N.BitLen() != 3072 {
					t.Errorf("PS384 JWK holds %T, want a 3072-bit RSA public key", key)
				}
			},
		},
	}

	// Sign everything first, then fetch the JWKS once, as a verifier would.
	tokens := make([]signed, len(cases))
	activeKids := make([]string, len(cases))
	for i, tc := range cases {
		activeKids[i] = createRing(t, m, tc.ring, tc.settings)
		role := map[string]any{
			"key":            tc.ring,
			"audiences":      []string{apiAudience, "https://other.example.com"},
			"ttl":            "15m",
			"max_ttl":        3600,
			"claims":         map[string]any{"team": "platform"},
			"allowed_claims": []string{"scope"},
		}
		if tc.tokenType != "" {
			role["token_type"] = tc.tokenType
		}
		createRole(t, m, tc.ring, role)
		tokens[i] = sign(t, m, tc.ring, map[string]any{
			"claims":   map[string]any{"scope": "read"},
			"audience": apiAudience,
		})
	}
	jwks := fetchJWKS(t, m, "jwks")

	for i, tc := range cases {
		t.Run(tc.alg, func(t *testing.T) {
			tok := tokens[i]
			if tok.Kid != activeKids[i] {
				t.Errorf("sign response kid %s, want the ring's active kid %s", tok.Kid, activeKids[i])
			}
			if got := tok.ExpiresAt - tok.IssuedAt; got != 900 {
				t.Errorf("expires_at - issued_at = %d, want the role ttl 900", got)
			}

			keys := jwks.Set.Key(tok.Kid)
			if len(keys) != 1 {
				t.Fatalf("kid %s appears %d times in the JWKS %v", tok.Kid, len(keys), jwks.kids())
			}
			if keys[0].Algorithm != tc.alg || keys[0].Use != "sig" {
				t.Errorf("JWK %s: alg %q use %q, want %s and sig", tok.Kid, keys[0].Algorithm, keys[0].Use, tc.alg)
			}
			tc.checkKey(t, keys[0].Key)

			hdr, claims, err := verifyWithJose(tok.Token, jwks.Set, tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if hdr.KeyID != tok.Kid {
				t.Errorf("kid header %q, sign response kid %q", hdr.KeyID, tok.Kid)
			}
			if hdr.Algorithm != tc.alg {
				t.Errorf("alg header %q, want %s", hdr.Algorithm, tc.alg)
			}
			if typ := hdr.ExtraHeaders[jose.HeaderType]; typ != tc.wantTyp {
				t.Errorf("typ header %v, want %s", typ, tc.wantTyp)
			}
			checkClaims(t, claims, m, tok)

			rc, err := verifyWithGolangJWT(tok.Token, jwks.Set, expectation{
				Alg: tc.alg, Issuer: m.issuer, Audience: apiAudience, Subject: env.entityID,
			})
			if err != nil {
				t.Fatal(err)
			}
			if rc.ID != tok.JTI {
				t.Errorf("golang-jwt jti %q, want %q", rc.ID, tok.JTI)
			}
		})
	}
}

// checkClaims asserts the registered and custom claims of a token signed by
// sign() on a role with static claim team=platform and caller claim
// scope=read.
func checkClaims(t *testing.T, claims map[string]any, m *mount, tok signed) {
	t.Helper()
	if iss := claims["iss"]; iss != m.issuer {
		t.Errorf("iss %v, want %s", iss, m.issuer)
	}
	if sub := claims["sub"]; sub != env.entityID {
		t.Errorf("sub %v, want the signer's entity id %s", sub, env.entityID)
	}
	switch aud := claims["aud"].(type) {
	case string:
		if aud != apiAudience {
			t.Errorf("aud %q, want %s", aud, apiAudience)
		}
	case []any:
		if len(aud) != 1 || aud[0] != apiAudience {
			t.Errorf("aud %v, want only %s", aud, apiAudience)
		}
	default:
		t.Errorf("aud is %T (%v)", aud, aud)
	}
	if jti := claims["jti"]; jti != tok.JTI || tok.JTI == "" {
		t.Errorf("jti %v, sign response jti %q", jti, tok.JTI)
	}
	for name, want := range map[string]int64{"iat": tok.IssuedAt, "nbf": tok.IssuedAt, "exp": tok.ExpiresAt} {
		n, ok := claims[name].(json.Number)
		got, err := n.Int64()
		if !ok || err != nil || got != want {
			t.Errorf("%s = %v, want %d", name, claims[name], want)
		}
	}
	if claims["scope"] != "read" {
		t.Errorf("caller claim scope = %v, want read", claims["scope"])
	}
	if claims["team"] != "platform" {
		t.Errorf("role claim team = %v, want platform", claims["team"])
	}
}
