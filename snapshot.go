package jwtrotor

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// A ring snapshot (snapshot/<ring>) is the key set for a verifier that
// never fetches: one that is handed a JWKS (an uploaded jwksJson, a pasted
// set, a key compiled into a package) and keeps it. It holds every key that
// verifies a token the ring has signed that is still live, and every key
// the schedule will sign with before valid_until, with each key's validity
// window, in the spirit of the trust-anchor files of DNSSEC (RFC 9718). A
// forced rotation, or a revocation that promotes a key early, moves the
// schedule: a snapshot describes the schedule as it stood when it was read.
// Nothing here reads storage or changes state.

// snapshotKey is one key's validity window: when it signs from
// (activate_at), until (retire_at, 0 while no successor is scheduled), and
// when verifiers may drop it (remove_at, 0 likewise). A trusted key (of an
// adopted issuer) never signs: it verifies until remove_at.
type snapshotKey struct {
	KID        string `json:"kid"`
	Alg        string `json:"alg"`
	Thumbprint string `json:"thumbprint"`
	ActivateAt int64  `json:"activate_at"`
	RetireAt   int64  `json:"retire_at"`
	RemoveAt   int64  `json:"remove_at"`
	Trusted    bool   `json:"trusted"`
}

type ringSnapshot struct {
	jwks       []byte
	validUntil int64
	keys       []snapshotKey
	etag       string
	pem        string
}

// snapshotOf is r's snapshot at now. Its set: the ring's keys that are
// generated, not revoked and not yet removed (pending keys included, stocked
// or not yet published), and its trusted keys until they expire.
// valid_until is the first instant a key outside the set may sign by the
// schedule: the activation of the first key not yet generated, or, when
// none is planned, a rotation period after the last key's activation (a
// new key's slot is never earlier); now when such a key is already due.
func snapshotOf(r *ringEntry, now int64) (*ringSnapshot, error) {
	s := &ringSnapshot{keys: []snapshotKey{}}
	var jwks [][]byte
	next, lastActivation := forever, int64(0)
	for i := range r.Keys {
		k := &r.Keys[i]
		if k.revoked() {
			continue
		}
		if k.planned() {
			next = min(next, k.ActivateAt)
			continue
		}
		lastActivation = max(lastActivation, k.ActivateAt)
		if k.removeAt() <= now {
			continue
		}
		jwks = append(jwks, k.PublicJWK)
		s.keys = append(s.keys, snapshotKey{KID: k.KID, Alg: k.Alg, Thumbprint: k.thumbprint(),
			ActivateAt: k.ActivateAt, RetireAt: k.RetireAt, RemoveAt: k.RemoveAt})
	}
	for i := range r.Trusted {
		t := &r.Trusted[i]
		if t.ExpiresAt <= now {
			continue
		}
		jwks = append(jwks, t.PublicJWK)
		s.keys = append(s.keys, snapshotKey{KID: t.KID, Alg: t.Alg, Thumbprint: t.Thumbprint, RemoveAt: t.ExpiresAt, Trusted: true})
	}
	if next == forever && lastActivation > 0 {
		next = lastActivation + r.RotationPeriod
	}
	s.validUntil = max(next, now)
	var b bytes.Buffer
	b.WriteString(`{"keys":[`)
	for i, j := range jwks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(j)
	}
	b.WriteString(`]}`)
	s.jwks = b.Bytes()
	s.etag = snapshotETag(s.keys)
	var err error
	if s.pem, err = pemBundle(jwks); err != nil {
		return nil, err
	}
	return s, nil
}

// snapshotETag identifies a set by what is in it alone: the base64url
// SHA-256 of its "kid thumbprint" lines, sorted, each ended by a newline.
// Any etag can so be checked against the ring and its history without
// storing the snapshots handed out.
func snapshotETag(keys []snapshotKey) string {
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, k.KID+" "+k.Thumbprint+"\n")
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// pemBundle is the public keys of jwks as PEM "PUBLIC KEY" blocks
// (PKIX), in the same order, for services that take raw public keys.
func pemBundle(jwks [][]byte) (string, error) {
	var b strings.Builder
	for _, raw := range jwks {
		var k jose.JSONWebKey
		if err := json.Unmarshal(raw, &k); err != nil {
			return "", fmt.Errorf("a published key does not parse: %w", err)
		}
		der, err := x509.MarshalPKIXPublicKey(k.Key)
		if err != nil {
			return "", fmt.Errorf("key %s: %w", k.KeyID, err)
		}
		if err := pem.Encode(&b, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
			return "", err
		}
	}
	return b.String(), nil
}
