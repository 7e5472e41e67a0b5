package jwtrotor

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of adopt.go (the kid and key checks import and trust share), the
// adoption metrics, and the helpers the import and trust tests use.

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

// mustJWK is the first key of a JWKS response.
func mustJWK(t *testing.T, resp *logical.Response) jose.JSONWebKey {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(resp.Data[logical.HTTPRawBody].([]byte), &set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("JWKS: %v", err)
	}
	return set.Keys[0]
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

// A chosen kid is 1 to maxKIDLen bytes of the kid syntax: thumbprints,
// UUIDs, dates and DID URLs fit; spaces, quotes and control characters do
// not.
func TestCheckKID(t *testing.T) {
	t.Parallel()
	for _, kid := range []string{"a", "legacy-2024", "2f1c9b0e-5c1d-4d7e-9a6b-0c3e8f1a2b4d", "did:web:example.com#key-1", "a+b/c=d@e~f.g_h", strings.Repeat("k", maxKIDLen)} {
		if err := checkKID(kid); err != nil {
			t.Errorf("%q: %v", kid, err)
		}
	}
	for _, kid := range []string{"", strings.Repeat("k", maxKIDLen+1), "two words", `"quoted"`, "tab\there", "ключ"} {
		if err := checkKID(kid); !isRefusal(err) {
			t.Errorf("%q: %v, want a refusal", kid, err)
		}
	}
}

// checkKeyAlg takes a key only with an algorithm it fits and within the
// size rules; a mismatch is the algorithm field's, a key outside the rules
// the key field's.
func TestCheckKeyAlg(t *testing.T) {
	t.Parallel()
	rsa2048 := newTestKey(t, "RSA-2048").Public()
	p256 := newTestKey(t, "P-256").Public()
	ed := newTestKey(t, "Ed25519").Public()
	for _, c := range []struct {
		pub   crypto.PublicKey
		alg   string
		field string // "" when taken
	}{
		{rsa2048, "RS256", ""},
		{rsa2048, "PS512", ""},
		{p256, "ES256", ""},
		{ed, "EdDSA", ""},
		{rsa2048, "ES256", "alg"},
		{p256, "ES384", "alg"},
		{ed, "RS256", "alg"},
		{rsa2048, "HS256", "alg"},
		{newTestKey(t, "RSA-1024").Public(), "RS256", "key"},
		{&rsa.PublicKey{N: rsa2048.(*rsa.PublicKey).N, E: 3}, "RS256", "key"},
	} {
		err := checkKeyAlg(c.pub, c.alg, "alg", "key")
		var fe *fieldError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s with %s: %v", keyKind(c.pub), c.alg, err)
		case c.field != "" && (!errors.As(err, &fe) || fe.Field != c.field):
			t.Errorf("%s with %s: %v, want a refusal of %s", keyKind(c.pub), c.alg, err, c.field)
		}
	}
}
