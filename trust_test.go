package jwtrotor

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// Tests of trust.go: the public key given to trust, as a JWK or PEM, and
// trustOp's bounds.

// A JWK or PEM public key parses to the key it holds, with the JWK's kid
// and alg.
func TestParseTrustedKeys(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"RSA-2048", "P-384", "Ed25519"} {
		pub := newTestKey(t, kind).Public()
		got, kid, alg, err := parseTrustedJWK(publicJWKMap(t, pub, "old-1", "X1", nil))
		if err != nil || !reflect.DeepEqual(got, pub) || kid != "old-1" || alg != "X1" {
			t.Errorf("%s JWK: %v kid %q alg %q err %v", kind, got, kid, alg, err)
		}
		got, err = parseTrustedPEM(publicPEM(t, pub))
		if err != nil || !reflect.DeepEqual(got, pub) {
			t.Errorf("%s PEM: %v err %v", kind, got, err)
		}
	}
	rsaPub := newTestKey(t, "RSA-2048").Public().(*rsa.PublicKey)
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaPub)}))
	if got, err := parseTrustedPEM(pkcs1); err != nil || !reflect.DeepEqual(got, rsaPub) {
		t.Fatalf("RSA PUBLIC KEY: %v %v", got, err)
	}
}

// A private member, a private PEM block, a point off its curve, a second
// block or a certificate is refused on its field, and no refusal repeats
// the key's values.
func TestParseTrustedRefusals(t *testing.T) {
	t.Parallel()
	ec := newTestKey(t, "P-256")
	jwk := publicJWKMap(t, ec.Public(), "old-1", "ES256", nil)
	withD := publicJWKMap(t, ec.Public(), "old-1", "ES256", map[string]any{"d": "c2VjcmV0LXZhbHVl"})
	offCurve := publicJWKMap(t, ec.Public(), "old-1", "ES256", map[string]any{"y": jwk["x"]})
	keyPEM := publicPEM(t, ec.Public())
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(t, ec)}))
	for _, c := range []struct {
		name   string
		parse  func() error
		field  string
		frag   string
		secret string
	}{
		{"a JWK with d", func() error { _, _, _, err := parseTrustedJWK(withD); return err }, "jwk", "private key member(s) d", "c2VjcmV0LXZhbHVl"},
		{"a point off the curve", func() error { _, _, _, err := parseTrustedJWK(offCurve); return err }, "jwk", "", ""},
		{"a private PEM", func() error { _, err := parseTrustedPEM(privPEM); return err }, "pem", "holds a private key", privPEM[28:60]},
		{"two PEM blocks", func() error { _, err := parseTrustedPEM(keyPEM + keyPEM); return err }, "pem", "more than one PEM block", ""},
		{"a certificate", func() error {
			_, err := parseTrustedPEM(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})))
			return err
		}, "pem", "is a certificate", ""},
		{"not PEM", func() error { _, err := parseTrustedPEM("hello"); return err }, "pem", "not a PEM block", ""},
	} {
		err := c.parse()
		var fe *fieldError
		if !errors.As(err, &fe) || fe.Field != c.field || !strings.Contains(fe.Msg, c.frag) {
			t.Errorf("%s: %v, want a refusal of %s saying %q", c.name, err, c.field, c.frag)
			continue
		}
		if c.secret != "" && strings.Contains(fe.Msg, c.secret) {
			t.Errorf("%s: the refusal repeats the key: %s", c.name, fe.Msg)
		}
	}
}

// trustOp publishes a key from now until its expiry, at most
// maxTrustPeriodSeconds ahead and maxTrustedKeys per ring.
func TestTrustOpBounds(t *testing.T) {
	t.Parallel()
	now := int64(1000)
	r := &ringEntry{Name: "k"}
	if _, err := trustOp(r, now, trustedKey{KID: "t0", ExpiresAt: now}, "jwk"); !isRefusal(err) || len(r.Trusted) != 0 {
		t.Fatalf("an expiry of now: %v", err)
	}
	if _, err := trustOp(r, now, trustedKey{KID: "t0", ExpiresAt: now + maxTrustPeriodSeconds + 1}, "jwk"); !isRefusal(err) || len(r.Trusted) != 0 {
		t.Fatalf("an expiry past the bound: %v", err)
	}
	for i := 0; i < maxTrustedKeys; i++ {
		res, err := trustOp(r, now, trustedKey{KID: "t", ExpiresAt: now + maxTrustPeriodSeconds}, "jwk")
		if err != nil || len(res.Warnings) != 1 || r.Trusted[i].AddedAt != now {
			t.Fatalf("key %d: %v %+v", i, err, res)
		}
	}
	_, err := trustOp(r, now, trustedKey{KID: "t", ExpiresAt: now + 1}, "pem")
	var fe *fieldError
	if !errors.As(err, &fe) || fe.Field != "pem" || len(r.Trusted) != maxTrustedKeys {
		t.Fatalf("one key past the limit: %v, %d trusted", err, len(r.Trusted))
	}
}
