package jwtrotor

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
)

// The import of a wrapped key (keys/<name>/import, path_import.go): after
// unwrapImport (wrapping.go) has opened the ciphertext, parseImported turns
// the key material into the key to store, and importOp makes it the active
// key of the new ring. The checks shared with trust (kid syntax, key and
// algorithm) are in adopt.go.

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

// importOp makes key, made outside the plugin, the active key of the new
// ring r from now. Its verifiers already trust it, so it signs without a
// lead in this JWKS (Imported waives the lead, as Forced does); stocking
// then plans its successor, published now and activating a full lead (and
// at least a rotation_period) later; from there the key retires, and loses
// its private half, on schedule.
func importOp(r *ringEntry, now int64, key *generatedKey) opResult {
	r.Keys = append(r.Keys, signingKey{
		KID: key.KID, Thumbprint: key.Thumbprint, Alg: key.Alg, PublicJWK: key.PublicJWK,
		PublishAt: now, ActivateAt: now, Lead: r.PublishLead, Overlap: r.VerificationTTL,
		HasPrivate: true, Imported: true,
	})
	planStock(r, now)
	settle(r, now)
	res := opResult{PromotedKID: key.KID, ActivatesAt: now, Reason: "imported"}
	if k := &r.Keys[0]; k.RetireAt != 0 {
		res.warn("imported key %s signs from now and retires at %s, when its successor (in the JWKS from now) takes over; move verifiers that pinned %s to the JWKS before then. Its private half is deleted at that retirement, and its kid leaves the JWKS at %s", k.KID, fmtTime(k.RetireAt), k.KID, fmtTime(k.RemoveAt))
	}
	return res
}
