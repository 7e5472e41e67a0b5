package jwtrotor

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"fmt"
	"regexp"
	"strings"
)

// Keys an issuer brings with it: a private key imported to sign (its kid
// kept; import.go), and public keys trusted for a while so that its tokens
// already out keep verifying (trust.go). This file holds the checks both
// share: the kid, the key's kind and size, and its algorithm. Everything
// that parses caller input that holds, or may hold, key material refuses
// without quoting the input or a parser's error: each refusal names the
// field and says what was wrong in words of its own.

// maxKIDLen bounds a chosen kid.
const maxKIDLen = 128

// kidPattern is the syntax of a chosen kid: printable, unambiguous in a JWT
// header, a JWKS, a URL and a log line. Kids of the form of thumbprints
// (base64url), UUIDs, dates, key-N, base64 and DID URLs (did:web:x#key-1)
// all fit.
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9._~:+/=@#-]+$`)

// checkKID refuses a kid outside the syntax and length bound.
func checkKID(kid string) error {
	switch {
	case kid == "":
		return refuse("kid", "is empty; give the kid verifiers know the key by, or leave the field out to use the key's RFC 7638 thumbprint")
	case len(kid) > maxKIDLen:
		return refuse("kid", "%d bytes is longer than the %d-byte limit for a kid", len(kid), maxKIDLen)
	case !kidPattern.MatchString(kid):
		return refuse("kid", "holds characters outside letters, digits and - _ . ~ : + / = @ #; a kid with spaces, quotes or control characters reads differently in different verifiers")
	}
	return nil
}

// keyKind names a key's type and size, never its value.
func keyKind(k any) string {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *rsa.PrivateKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case *ecdsa.PrivateKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey, ed25519.PrivateKey:
		return "Ed25519"
	}
	return strings.TrimPrefix(fmt.Sprintf("%T", k), "*")
}

// curveOf is the curve each ECDSA algorithm signs with.
var curveOf = map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}

// algsFor lists the algorithms a key can be used with, for messages.
func algsFor(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256, RS384, RS512, PS256, PS384 or PS512"
	case *ecdsa.PublicKey:
		for _, a := range []string{"ES256", "ES384", "ES512"} {
			if curveOf[a] == k.Curve {
				return a
			}
		}
	case ed25519.PublicKey:
		return "EdDSA"
	}
	return "none of the supported algorithms"
}

// checkKeyAlg refuses a key that alg cannot sign or verify with, or that is
// outside the size rules: RSA of 2048 to 4096 bits with the exponent 65537,
// the curve of each ECDSA algorithm, Ed25519 for EdDSA. keyField names where
// the key came from; a mismatch of algorithm is the algorithm field's.
func checkKeyAlg(pub crypto.PublicKey, alg, algField, keyField string) error {
	if !validAlgorithm(alg) {
		return refuse(algField, "%q is not supported; use one of %s (HMAC and none are never allowed)", alg, strings.Join(supportedAlgorithms, ", "))
	}
	mismatch := func() error {
		return refuse(algField, "%s cannot be used with this key, which is %s; give the algorithm its tokens carry: %s", alg, keyKind(pub), algsFor(pub))
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if !isRSA(alg) {
			return mismatch()
		}
		if bits := k.N.BitLen(); bits < 2048 || bits > 4096 {
			return refuse(keyField, "the RSA key has %d bits; the plugin takes RSA keys of 2048 to 4096 bits (a smaller key is too weak to adopt: move its verifiers to a new key instead)", bits)
		}
		if k.E != 65537 {
			return refuse(keyField, "the RSA key's public exponent is %d; the plugin takes 65537 only, the exponent every verifier library accepts", k.E)
		}
	case *ecdsa.PublicKey:
		if curveOf[alg] == nil || curveOf[alg] != k.Curve {
			return mismatch()
		}
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return mismatch()
		}
	default:
		return refuse(keyField, "is a %s key; the plugin takes RSA, EC (P-256, P-384, P-521) and Ed25519 keys", keyKind(pub))
	}
	return nil
}
