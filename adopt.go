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
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
)

// Keys an issuer brings with it: a private key imported to sign (its kid
// kept), and public keys trusted for a while so that its tokens already
// out keep verifying. Everything here parses caller input that holds, or
// may hold, key material, so no refusal quotes the input or a parser's
// error: each names the field and says what was wrong in words of its own.

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

// errNotPrivateKey is parsePrivateDER's error: nothing of the input is in it.
var errNotPrivateKey = errors.New("not a PKCS#8, PKCS#1 or SEC 1 private key")

// parsePrivateDER parses a DER private key: PKCS#8 (what the transit import
// format carries), or, as transit also takes them, a PKCS#1 RSA or SEC 1 EC
// key. isPrivate reports that the bytes are a private key of some kind, even
// one the plugin cannot use.
func parsePrivateDER(der []byte) (signer crypto.Signer, isPrivate bool, err error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, true, fmt.Errorf("a %s key cannot sign", keyKind(k))
		}
		return s, true, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, true, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, true, nil
	}
	return nil, false, errNotPrivateKey
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

// parseImported turns the unwrapped key material of an import into the key
// to store: its PKCS#8 (re-encoded from the parsed key), its public JWK
// rebuilt under kid (or its thumbprint), checked against alg.
func parseImported(der []byte, alg, kid string) (*generatedKey, error) {
	defer clear(der)
	priv, isPrivate, err := parsePrivateDER(der)
	switch {
	case err != nil && isPrivate:
		return nil, refuse("ciphertext", "the wrapped key cannot sign (%v); the plugin takes RSA, EC (P-256, P-384, P-521) and Ed25519 keys", err)
	case err != nil:
		return nil, refuse("ciphertext", "the wrapped material is not a private key in PKCS#8 DER (nor PKCS#1 or SEC 1); convert it with openssl pkcs8 -topk8 -nocrypt -outform DER, base64 that, and wrap it again")
	}
	if err := checkKeyAlg(priv.Public(), alg, "algorithm", "ciphertext"); err != nil {
		return nil, err
	}
	if k, ok := priv.(*rsa.PrivateKey); ok {
		if k.Validate() != nil {
			return nil, refuse("ciphertext", "the wrapped RSA key is inconsistent (its parts do not make one key)")
		}
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode the imported key: %w", err)
	}
	tp, jwk, err := publicJWKAs(priv.Public(), alg, kid)
	if err != nil {
		return nil, err
	}
	g := &generatedKey{KID: kid, Alg: alg, PublicJWK: jwk, PKCS8: pkcs8, Private: priv}
	if kid == "" || kid == tp {
		g.KID = tp
	} else {
		g.Thumbprint = tp
	}
	return g, nil
}

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
