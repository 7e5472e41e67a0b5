package jwtrotor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"sort"
	"strings"
)

// Trust (keys/<name>/trust, path_trust.go): parseTrustedJWK and
// parseTrustedPEM read the public key given, and trustOp adds it to a ring
// for a bounded time. The checks shared with import (kid syntax, key and
// algorithm) are in adopt.go.

// jwkPrivateMembers are the JWK members that carry private or secret key
// material (RFC 7518 6.2.2, 6.3.2, 6.4.1, and RFC 8037's d).
var jwkPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// parseTrustedJWK parses a public JWK given to trust: kty RSA, EC or OKP
// (Ed25519), with its public parameters; kid and alg as given in it (either
// may come from the request's fields instead). Any private member refuses
// the key without quoting it.
func parseTrustedJWK(m map[string]any) (pub crypto.PublicKey, kid, alg string, err error) {
	var private []string
	for _, name := range jwkPrivateMembers {
		if _, ok := m[name]; ok {
			private = append(private, name)
		}
	}
	if len(private) > 0 {
		sort.Strings(private)
		return nil, "", "", refuse("jwk", "holds private key member(s) %s; give the public key only (nothing of the request was stored, and its values are not repeated here)", strings.Join(private, ", "))
	}
	str := func(name string) (string, error) {
		v, ok := m[name]
		if !ok {
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", refuse("jwk", "member %q must be a string", name)
		}
		return s, nil
	}
	b64 := func(name string) ([]byte, error) {
		s, err := str(name)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, refuse("jwk", "member %q is missing or empty", name)
		}
		v, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			return nil, refuse("jwk", "member %q is not base64url without padding", name)
		}
		return v, nil
	}
	var fields [4]string
	for i, name := range []string{"kty", "kid", "alg", "use"} {
		if fields[i], err = str(name); err != nil {
			return nil, "", "", err
		}
	}
	kty, kid, alg, use := fields[0], fields[1], fields[2], fields[3]
	if use != "" && use != "sig" {
		return nil, "", "", refuse("jwk", "has use %q; a trusted key verifies signatures (use \"sig\", or leave use out)", use)
	}
	switch kty {
	case "RSA":
		n, err := b64("n")
		if err != nil {
			return nil, "", "", err
		}
		e, err := b64("e")
		if err != nil {
			return nil, "", "", err
		}
		if len(e) > 4 || n[0] == 0 {
			return nil, "", "", refuse("jwk", "has an RSA modulus or exponent that is not in its minimal form")
		}
		pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	case "EC":
		crv, err := str("crv")
		if err != nil {
			return nil, "", "", err
		}
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[crv]
		if curve == nil {
			return nil, "", "", refuse("jwk", "has crv %q; the plugin takes P-256, P-384 and P-521", crv)
		}
		x, err := b64("x")
		if err != nil {
			return nil, "", "", err
		}
		y, err := b64("y")
		if err != nil {
			return nil, "", "", err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, "", "", refuse("jwk", "has x or y of the wrong length for %s (%d bytes each)", crv, size)
		}
		pt, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, "", "", refuse("jwk", "x and y are not a point of %s", crv)
		}
		pub = pt
	case "OKP":
		crv, err := str("crv")
		if err != nil {
			return nil, "", "", err
		}
		if crv != "Ed25519" {
			return nil, "", "", refuse("jwk", "has crv %q; the plugin takes OKP keys on Ed25519 only", crv)
		}
		x, err := b64("x")
		if err != nil {
			return nil, "", "", err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, "", "", refuse("jwk", "has an Ed25519 x of %d bytes, not %d", len(x), ed25519.PublicKeySize)
		}
		pub = ed25519.PublicKey(x)
	case "":
		return nil, "", "", refuse("jwk", "has no kty; give a JWK with kty RSA, EC or OKP and its public parameters")
	default:
		return nil, "", "", refuse("jwk", "has kty %q; the plugin trusts RSA, EC and OKP (Ed25519) public keys only", kty)
	}
	return pub, kid, alg, nil
}

// parseTrustedPEM parses a PEM public key given to trust: PUBLIC KEY (PKIX)
// or RSA PUBLIC KEY (PKCS#1), one block. A private key refuses the request
// without being quoted.
func parseTrustedPEM(text string) (crypto.PublicKey, error) {
	if strings.Contains(text, "PRIVATE KEY") {
		return nil, refuse("pem", "holds a private key; give the public key only, such as openssl pkey -pubout prints (nothing of the request was stored, and its value is not repeated here)")
	}
	block, rest := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil {
		return nil, refuse("pem", "is not a PEM block; give one public key as -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, refuse("pem", "holds more than one PEM block; trust one key per request")
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		return nil, refuse("pem", "is a certificate; give its public key (openssl x509 -pubkey -noout prints it)")
	default:
		return nil, refuse("pem", "is a PEM block of type %q; give a PUBLIC KEY (or RSA PUBLIC KEY) block", block.Type)
	}
	if err != nil {
		return nil, refuse("pem", "is a %s block that does not parse as a public key", block.Type)
	}
	return pub, nil
}

// trustOp adds t, a verify-only public key of the issuer r adopts, to r's
// JWKS from now until its expires_at, within maxTrustPeriodSeconds. It never
// signs. keyField names the field that carried the key.
func trustOp(r *ringEntry, now int64, t trustedKey, keyField string) (opResult, error) {
	var res opResult
	switch {
	case t.ExpiresAt <= now:
		return res, refuse("expires_at", "%s is not in the future; give when the last token of the old issuer signed with this key expires (Unix seconds)", fmtTime(t.ExpiresAt))
	case t.ExpiresAt > now+maxTrustPeriodSeconds:
		return res, refuse("expires_at", "%s is more than %d days away; a trusted key is published for at most %d days (until %s): give an earlier time, when the old issuer's tokens have expired", fmtTime(t.ExpiresAt), maxTrustPeriodSeconds/86400, maxTrustPeriodSeconds/86400, fmtTime(now+maxTrustPeriodSeconds))
	case len(r.Trusted) >= maxTrustedKeys:
		return res, refuse(keyField, "ring %q already trusts %d keys, the limit; revoke one that no token needs any more first", r.Name, maxTrustedKeys)
	}
	t.AddedAt = now
	r.Trusted = append(r.Trusted, t)
	res.warn("trusted key %s is in the JWKS until %s so that tokens already signed with it keep verifying; it never signs here", t.KID, fmtTime(t.ExpiresAt))
	return res, nil
}
