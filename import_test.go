package jwtrotor

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
)

// Tests of import.go: the unwrapped key material of an import becomes the
// key to store, and importOp makes it the active key of a new ring.

// parseImported takes PKCS#8, PKCS#1 and SEC 1 keys, stores them as PKCS#8,
// and keeps the kid given or names the key by its thumbprint.
func TestParseImportedFormats(t *testing.T) {
	t.Parallel()
	rsaKey := newTestKey(t, "RSA-2048").(*rsa.PrivateKey)
	ecKey := newTestKey(t, "P-256").(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, alg, kid string
		der            []byte
		tp             string
	}{
		{"PKCS#8 under a chosen kid", "RS256", "legacy-1", mustPKCS8(t, rsaKey), thumbprintOf(t, rsaKey.Public())},
		{"PKCS#1", "PS256", "", x509.MarshalPKCS1PrivateKey(rsaKey), thumbprintOf(t, rsaKey.Public())},
		{"SEC 1", "ES256", "", sec1, thumbprintOf(t, ecKey.Public())},
	} {
		g, err := parseImported(c.der, c.alg, c.kid)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		wantKID, wantTP := c.kid, c.tp
		if c.kid == "" {
			wantKID, wantTP = c.tp, ""
		}
		if g.KID != wantKID || g.Thumbprint != wantTP || g.Alg != c.alg || g.storeID() != c.tp {
			t.Errorf("%s: kid %s thumbprint %q alg %s store id %s; want kid %s thumbprint %q", c.name, g.KID, g.Thumbprint, g.Alg, g.storeID(), wantKID, wantTP)
		}
		if _, err := x509.ParsePKCS8PrivateKey(g.PKCS8); err != nil {
			t.Errorf("%s: not stored as PKCS#8: %v", c.name, err)
		}
	}
}

// Material that is no private key, or a key the algorithm does not fit, is
// refused on the ciphertext or algorithm field without quoting it.
func TestParseImportedRefusals(t *testing.T) {
	t.Parallel()
	rsaKey := newTestKey(t, "RSA-2048")
	pub, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parsePrivateDER(pub); !errors.Is(err, errNotPrivateKey) {
		t.Fatalf("a public key parses as a private one: %v", err)
	}
	for _, c := range []struct {
		name, alg string
		der       []byte
		field     string
		frag      string
	}{
		{"a public key", "RS256", pub, "ciphertext", "not a private key"},
		{"random bytes", "RS256", []byte("not a key at all"), "ciphertext", "not a private key"},
		{"an RSA key for ES256", "ES256", mustPKCS8(t, rsaKey), "algorithm", "cannot be used with this key"},
	} {
		_, err := parseImported(c.der, c.alg, "")
		var fe *fieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Msg, c.frag) {
			t.Errorf("%s: %v, want a refusal of %s saying %q", c.name, err, c.field, c.frag)
		}
	}
}

// importOp makes the key the ring's active key from now, with the lead
// waived, and plans its successor a full lead (and a period) later.
func TestImportOp(t *testing.T) {
	t.Parallel()
	g, err := parseImported(mustPKCS8(t, newTestKey(t, "P-256")), "ES256", "legacy-1")
	if err != nil {
		t.Fatal(err)
	}
	now := int64(1000)
	r := newRing("k", now)
	r.Algorithm, r.RotationPeriod, r.PublishLead, r.VerificationTTL = "ES256", 3600, 600, 7200
	res := importOp(r, now, g)
	k := &r.Keys[0]
	if k.KID != "legacy-1" || !k.Imported || k.ActivateAt != now || k.state(now) != stateActive || !k.leadWaived() {
		t.Fatalf("imported key %+v", *k)
	}
	if res.PromotedKID != "legacy-1" || res.ActivatesAt != now || res.Reason != "imported" || len(res.Warnings) != 1 {
		t.Fatalf("result %+v", res)
	}
	next := liveAfter(r.Keys, 0)
	if next < 0 || r.Keys[next].ActivateAt != now+3600 || r.Keys[next].PublishAt != now || k.RetireAt != now+3600 {
		t.Fatalf("successor %+v, imported key retires at %d", r.Keys, k.RetireAt)
	}
}
