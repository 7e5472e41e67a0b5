package jwtrotor

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/tink-crypto/tink-go/v2/kwp/subtle"
)

// The mount's import wrapping key: an RSA-4096 key pair made on the first
// read of wrapping_key and kept, like private halves, in seal-wrapped
// storage. Its public half is what `vault transit import` encrypts an
// ephemeral AES-256 key to (RSA-OAEP with SHA-256); the key material itself
// is wrapped under that AES key with KWP (RFC 5649, Tink's kwp/subtle, the
// implementation transit's import and the CLI use). So key material reaches
// the plugin only encrypted to a key that never leaves it.

// wrappingBits is the size of the wrapping key, and wrappedKeyBytes the
// size of its RSA-OAEP ciphertext, which opens an import's ciphertext.
const (
	wrappingBits    = 4096
	wrappedKeyBytes = wrappingBits / 8
)

// wrappingKeySource makes a new wrapping key pair; tests replace it.
type wrappingKeySource func() (*rsa.PrivateKey, error)

func generateWrappingKey() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, wrappingBits)
}

type wrappingEntry struct {
	Version   int    `json:"version"`
	PKCS8     []byte `json:"pkcs8"`
	CreatedAt int64  `json:"created_at"`
}

// wrappingKey returns the mount's wrapping key, making and storing it when
// there is none and create is set (nil, nil when there is none and create
// is not). It is read from storage once and then kept in memory.
func (b *backend) wrappingKey(ctx context.Context, s logical.Storage, create bool) (*rsa.PrivateKey, error) {
	b.mu.RLock()
	k := b.wrapping
	b.mu.RUnlock()
	if k != nil {
		return k, nil
	}
	e := &wrappingEntry{}
	ok, err := getJSON(ctx, s, wrappingPath, e)
	if err != nil {
		return nil, err
	}
	switch {
	case ok:
		if err := checkVersion(wrappingPath, e.Version); err != nil {
			return nil, err
		}
		parsed, err := x509.ParsePKCS8PrivateKey(e.PKCS8)
		if err != nil {
			return nil, fmt.Errorf("decode the wrapping key: %w", err)
		}
		rk, isRSA := parsed.(*rsa.PrivateKey)
		if !isRSA || rk.N.BitLen() != wrappingBits {
			return nil, fmt.Errorf("the stored wrapping key is not an RSA-%d key", wrappingBits)
		}
		k = rk
	case !create:
		return nil, nil
	default:
		if k, err = b.wrapKeys(); err != nil {
			return nil, fmt.Errorf("generate the wrapping key: %w", err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			return nil, fmt.Errorf("encode the wrapping key: %w", err)
		}
		if err := putJSON(ctx, s, wrappingPath, &wrappingEntry{Version: schemaVersion, PKCS8: der, CreatedAt: b.now()}); err != nil {
			return nil, err
		}
		b.log().Info("import wrapping key generated", "bits", wrappingBits)
	}
	b.mu.Lock()
	b.wrapping = k
	b.mu.Unlock()
	return k, nil
}

// wrappingPublicPEM is the public half as a PKIX PEM block, the form
// `vault transit import` reads from the public_key field.
func wrappingPublicPEM(k *rsa.PrivateKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return "", fmt.Errorf("encode the wrapping key's public half: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// importHow is the fix every refusal of an import ciphertext names.
const importHow = "wrap the key with vault transit import, which reads the mount's wrapping_key"

// unwrapImport opens an import's ciphertext: base64 of the RSA-OAEP
// (SHA-256) encryption of an ephemeral AES-256 key to the wrapping key,
// followed by the key material wrapped under that AES key with KWP. Every
// refusal names the field and the fix and says nothing of what the
// ciphertext decrypted to.
func unwrapImport(wrapping *rsa.PrivateKey, ciphertext string) ([]byte, error) {
	text := strings.TrimSpace(ciphertext)
	if text == "" {
		return nil, refuse("ciphertext", "required: the key material wrapped for this mount; %s", importHow)
	}
	if plainKey(text) {
		return nil, refuse("ciphertext", "holds a private key that is not wrapped; plain keys are refused, since they would reach Vault's audit devices in the clear: %s (nothing was stored)", importHow)
	}
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return nil, refuse("ciphertext", "is not base64 (standard alphabet); %s", importHow)
	}
	if len(raw) <= wrappedKeyBytes {
		return nil, refuse("ciphertext", "is %d bytes, too short to hold a key wrapped for a %d-bit wrapping key; %s", len(raw), wrappingBits, importHow)
	}
	if wrapping == nil {
		return nil, refuse("ciphertext", "this mount has no wrapping key yet, so nothing can have been wrapped for it; read wrapping_key first (vault transit import does)")
	}
	aesKey, err := rsa.DecryptOAEP(sha256.New(), nil, wrapping, raw[:wrappedKeyBytes], nil)
	if err != nil {
		return nil, refuse("ciphertext", "cannot be opened with this mount's wrapping key: it was wrapped for another mount's (or an older) wrapping key, with another hash than SHA-256, or was altered; %s", importHow)
	}
	defer clear(aesKey)
	return openWrappedKey(aesKey, raw[wrappedKeyBytes:])
}

// openWrappedKey unwraps an import's key material (the ciphertext after
// its RSA-OAEP part) under the ephemeral key that part held, which the
// format fixes to AES-256.
func openWrappedKey(aesKey, kwpPart []byte) ([]byte, error) {
	if len(aesKey) != 32 {
		return nil, refuse("ciphertext", "wraps a %d-byte ephemeral key; the format takes an AES-256 key (32 bytes); %s", len(aesKey), importHow)
	}
	der, err := unwrapKWP(aesKey, kwpPart)
	if err != nil {
		return nil, refuse("ciphertext", "the wrapped key material fails its integrity check (KWP, RFC 5649): it was altered or truncated; %s", importHow)
	}
	return der, nil
}

// errKWPIntegrity is the one error of unwrapKWP. Tink tells a wrapped key
// of the wrong size from one that fails the check of its initial value or
// padding; which check failed says nothing about the plaintext, and telling
// them apart would help no one but someone probing the key.
var errKWPIntegrity = errors.New("the wrapped key fails its integrity check")

// unwrapKWP reverses AES key wrap with padding (RFC 5649) under kek with
// Tink's implementation. Tink takes AES-128 and AES-256 keks (the import
// format always uses AES-256) and unwraps 24 to 8200 bytes, so key material
// of 9 to 8192 bytes; `vault transit import` wraps with the same library,
// which wraps 16 bytes at the least, so it never makes a wrapped key outside
// those bounds. Every failure is errKWPIntegrity, never a wrong plaintext.
func unwrapKWP(kek, wrapped []byte) ([]byte, error) {
	kw, err := subtle.NewKWP(kek)
	if err != nil {
		return nil, errKWPIntegrity
	}
	plain, err := kw.Unwrap(wrapped)
	if err != nil {
		return nil, errKWPIntegrity
	}
	return plain, nil
}

// plainKey reports whether text is a private key that was not wrapped: PEM,
// or base64 of DER that parses as one.
func plainKey(text string) bool {
	if strings.Contains(text, "-----BEGIN") && strings.Contains(text, "PRIVATE KEY") {
		return true
	}
	raw, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return false
	}
	_, isPrivate, _ := parsePrivateDER(raw)
	return isPrivate
}
