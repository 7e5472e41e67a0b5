package jwtrotor

import (
	"testing"
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
