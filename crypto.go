package jwtrotor

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
)

// The algorithms a ring may use. HMAC and "none" are absent on purpose: a
// shared secret cannot be published, and "none" is not a signature.
var supportedAlgorithms = []string{
	"RS256", "RS384", "RS512",
	"PS256", "PS384", "PS512",
	"ES256", "ES384", "ES512",
	"EdDSA",
}

var supportedRSABits = []int{2048, 3072, 4096}

func isRSA(alg string) bool {
	return len(alg) == 5 && (alg[:2] == "RS" || alg[:2] == "PS")
}

func validAlgorithm(alg string) bool {
	for _, a := range supportedAlgorithms {
		if a == alg {
			return true
		}
	}
	return false
}

// generatedKey is a new signing key (or an imported one): its private half
// for storage and its public JWK and kid for the ring. Thumbprint is set when
// the kid is not the key's RFC 7638 thumbprint (an imported key's chosen kid).
type generatedKey struct {
	KID        string
	Thumbprint string
	Alg        string
	PublicJWK  []byte
	PKCS8      []byte
	Private    crypto.Signer
}

// storeID is where the key's private half is stored and cached: its
// thumbprint, which is its kid unless the kid was chosen.
func (g *generatedKey) storeID() string {
	if g.Thumbprint != "" {
		return g.Thumbprint
	}
	return g.KID
}

func generateKey(alg string, rsaBits int) (*generatedKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		priv, err = rsa.GenerateKey(rand.Reader, rsaBits)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ES384":
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "ES512":
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "EdDSA":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %s key: %w", alg, err)
	}
	return newGeneratedKey(priv, alg)
}

// newGeneratedKey encodes a new key pair for storage and publication.
func newGeneratedKey(priv crypto.Signer, alg string) (*generatedKey, error) {
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode %s key: %w", alg, err)
	}
	kid, jwk, err := publicJWK(priv.Public(), alg)
	if err != nil {
		return nil, err
	}
	return &generatedKey{KID: kid, Alg: alg, PublicJWK: jwk, PKCS8: pkcs8, Private: priv}, nil
}

// publicJWK returns the RFC 7638 thumbprint kid of pub and its JWK with kty,
// kid, alg and use, and nothing private.
func publicJWK(pub crypto.PublicKey, alg string) (string, []byte, error) {
	tp, jwk, err := publicJWKAs(pub, alg, "")
	return tp, jwk, err
}

// publicJWKAs returns the RFC 7638 thumbprint of pub and its JWK (kty, kid,
// alg, use and the public parameters, rebuilt from the parsed key) under kid,
// or under the thumbprint when kid is empty.
func publicJWKAs(pub crypto.PublicKey, alg, kid string) (string, []byte, error) {
	raw, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", nil, fmt.Errorf("thumbprint: %w", err)
	}
	tp := base64.RawURLEncoding.EncodeToString(raw)
	if kid == "" {
		kid = tp
	}
	jwk := jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"}
	if !jwk.IsPublic() {
		return "", nil, fmt.Errorf("refusing to publish a private key")
	}
	b, err := json.Marshal(jwk)
	if err != nil {
		return "", nil, fmt.Errorf("encode JWK: %w", err)
	}
	return tp, b, nil
}

// parsePrivate decodes a stored PKCS#8 private half and checks that it is
// the key its kid names (a generated key's kid is its thumbprint).
func parsePrivate(pkcs8 []byte, kid, alg string) (crypto.Signer, error) {
	return parsePrivateAs(pkcs8, kid, kid, alg)
}

// parsePrivateAs decodes a stored PKCS#8 private half and checks that it is
// the key its thumbprint names, so a mixed-up storage entry can never sign.
// kid names the key in errors.
func parsePrivateAs(pkcs8 []byte, kid, thumbprint, alg string) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(pkcs8)
	if err != nil {
		return nil, fmt.Errorf("decode private key %s: %w", kid, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("private key %s is not a signer", kid)
	}
	got, _, err := publicJWK(signer.Public(), alg)
	if err != nil {
		return nil, err
	}
	if got != thumbprint {
		return nil, fmt.Errorf("private key stored for %s has thumbprint %s, not %s", kid, got, thumbprint)
	}
	return signer, nil
}

// newJOSESigner builds a go-jose signer that writes only alg, kid and typ
// into the protected header.
func newJOSESigner(priv crypto.Signer, kid, alg, typ string) (jose.Signer, error) {
	var key any = priv
	// go-jose wants the concrete key types, not crypto.Signer.
	switch k := priv.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
		key = k
	case ed25519.PrivateKey:
		key = k
	}
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	return jose.NewSigner(jose.SigningKey{
		Algorithm: jose.SignatureAlgorithm(alg),
		Key:       jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg},
	}, opts)
}

// jwkSize estimates the rendered size of one public JWK, for the JWKS size
// bound, without generating a key.
func jwkSize(alg string, rsaBits int) int {
	const overhead = 110 // kty, kid (43), alg, use, punctuation
	switch alg {
	case "ES256":
		return overhead + 2*43 + 20
	case "ES384":
		return overhead + 2*64 + 20
	case "ES512":
		return overhead + 2*88 + 20
	case "EdDSA":
		return overhead + 43 + 20
	default:
		return overhead + (rsaBits/8*4+2)/3 + 20
	}
}

// errPrivateGone is a signing key's private half not found in storage.
var errPrivateGone = errors.New("private half not in storage")

// cachedSigner holds a parsed private half and its go-jose signers by typ.
type cachedSigner struct {
	priv crypto.Signer
	mu   sync.Mutex
	jose map[string]jose.Signer
}

// cacheSigner keeps a parsed private half by its storage id (storeID).
func (b *backend) cacheSigner(id string, priv crypto.Signer) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.signers[id] = &cachedSigner{priv: priv, jose: map[string]jose.Signer{}}
}

// joseSigner returns a signer for key, reading and parsing its private half
// only the first time.
func (b *backend) joseSigner(ctx context.Context, s logical.Storage, ring string, key *signingKey, typ string) (jose.Signer, error) {
	id := key.storeID()
	b.mu.RLock()
	cs := b.signers[id]
	b.mu.RUnlock()
	if cs == nil {
		p, err := readPrivate(ctx, s, ring, id)
		if err != nil {
			return nil, err
		}
		if p == nil {
			return nil, fmt.Errorf("ring %q: private half of active key %s is missing: %w", ring, key.KID, errPrivateGone)
		}
		priv, err := parsePrivateAs(p.PKCS8, key.KID, id, key.Alg)
		if err != nil {
			return nil, err
		}
		b.cacheSigner(id, priv)
		b.mu.RLock()
		cs = b.signers[id]
		b.mu.RUnlock()
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if js := cs.jose[typ]; js != nil {
		return js, nil
	}
	js, err := newJOSESigner(cs.priv, key.KID, key.Alg, typ)
	if err != nil {
		return nil, fmt.Errorf("signer for %s: %w", key.KID, err)
	}
	cs.jose[typ] = js
	return js, nil
}

func (b *backend) dropSigner(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.signers, id)
}
