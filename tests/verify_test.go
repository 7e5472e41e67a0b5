package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// jwksMediaType is RFC 7517's media type for a JWK Set.
const jwksMediaType = "application/jwk-set+json"

// privateMembers are the JWK members that carry private key material
// (RFC 7518 section 6 and RFC 8037).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// fetchedJWKS is one unauthenticated JWKS response.
type fetchedJWKS struct {
	Resp *http.Response
	Body []byte
	Set  jose.JSONWebKeySet
	// Members is each key's raw JSON object, to see members go-jose drops.
	Members []map[string]any
}

// fetchJWKS GETs a JWKS path under the mount with no token and checks what
// every 200 must carry.
func fetchJWKS(t testing.TB, m *mount, rel string) fetchedJWKS {
	t.Helper()
	resp, body := env.root.raw(t, http.MethodGet, m.p(rel), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", m.p(rel), resp.StatusCode, body)
	}
	return parseJWKS(t, m.p(rel), resp, body)
}

func parseJWKS(t testing.TB, what string, resp *http.Response, body []byte) fetchedJWKS {
	t.Helper()
	requireMediaType(t, what, resp, jwksMediaType)
	f := fetchedJWKS{Resp: resp, Body: body}
	if err := json.Unmarshal(body, &f.Set); err != nil {
		t.Fatalf("%s: body is not a JWK Set: %v: %s", what, err, body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	for member := range raw {
		if member != "keys" {
			t.Errorf("%s: top-level member %q: a JWKS body has only \"keys\" (no Vault envelope)", what, member)
		}
	}
	var keys struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &keys); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	f.Members = keys.Keys
	if len(f.Members) != len(f.Set.Keys) {
		t.Fatalf("%s: %d keys in the body, go-jose understood %d: %s", what, len(f.Members), len(f.Set.Keys), body)
	}
	return f
}

func requireMediaType(t testing.TB, what string, resp *http.Response, want string) {
	t.Helper()
	ct := resp.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != want {
		t.Fatalf("%s: Content-Type %q, want %s", what, ct, want)
	}
}

// kids lists the key ids of a set in order.
func (f fetchedJWKS) kids() []string {
	out := make([]string, 0, len(f.Set.Keys))
	for _, k := range f.Set.Keys {
		out = append(out, k.KeyID)
	}
	return out
}

func (f fetchedJWKS) has(kid string) bool {
	return len(f.Set.Key(kid)) > 0
}

// cacheControl is a parsed Cache-Control header: directive to value ("" for
// directives without one).
type cacheControl map[string]string

func parseCacheControl(h string) cacheControl {
	cc := cacheControl{}
	for _, part := range strings.Split(h, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		cc[strings.ToLower(strings.TrimSpace(name))] = strings.Trim(strings.TrimSpace(value), `"`)
	}
	return cc
}

// seconds returns a directive's delta-seconds, or an error if it is absent
// or not a non-negative integer.
func (cc cacheControl) seconds(name string) (int64, error) {
	v, ok := cc[name]
	if !ok {
		return 0, fmt.Errorf("no %s directive", name)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q is not delta-seconds", name, v)
	}
	return n, nil
}

// checkJWKSCaching asserts the Cache-Control of a JWKS 200:
// `public, max-age=N, stale-if-error=M` with 1 <= N <= maxAge and
// M <= publishLead, never no-store or must-revalidate. It returns N.
func checkJWKSCaching(t testing.TB, what string, resp *http.Response, maxAge, publishLead int64) int64 {
	t.Helper()
	h := resp.Header.Get("Cache-Control")
	cc := parseCacheControl(h)
	for _, banned := range []string{"no-store", "no-cache", "must-revalidate", "private"} {
		if _, ok := cc[banned]; ok {
			t.Errorf("%s: Cache-Control %q has %s", what, h, banned)
		}
	}
	if _, ok := cc["public"]; !ok {
		t.Errorf("%s: Cache-Control %q lacks public", what, h)
	}
	n, err := cc.seconds("max-age")
	if err != nil {
		t.Fatalf("%s: Cache-Control %q: %v", what, h, err)
	}
	if n < 1 || n > maxAge {
		t.Errorf("%s: Cache-Control %q: max-age=%d, want 1..%d (jwks_max_age)", what, h, n, maxAge)
	}
	m, err := cc.seconds("stale-if-error")
	if err != nil {
		t.Errorf("%s: Cache-Control %q: %v", what, h, err)
	} else if m > publishLead {
		t.Errorf("%s: Cache-Control %q: stale-if-error=%d exceeds publish_lead %d", what, h, m, publishLead)
	}
	return n
}

// verifyWithJose checks a token's signature with go-jose against the key its
// kid names in set, allowing only alg. It returns the protected header and
// the claims. It checks no time claims: callers decide what time it is.
func verifyWithJose(token string, set jose.JSONWebKeySet, alg string) (jose.Header, map[string]any, error) {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return jose.Header{}, nil, fmt.Errorf("go-jose parse: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return jose.Header{}, nil, fmt.Errorf("go-jose: %d signatures, want 1", len(jws.Signatures))
	}
	hdr := jws.Signatures[0].Protected
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		return hdr, nil, fmt.Errorf("go-jose: kid %q matches %d keys in the JWKS (%d keys)", hdr.KeyID, len(keys), len(set.Keys))
	}
	if keys[0].Algorithm != alg {
		return hdr, nil, fmt.Errorf("go-jose: JWK %s has alg %q, token uses %q", hdr.KeyID, keys[0].Algorithm, alg)
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		return hdr, nil, fmt.Errorf("go-jose verify with kid %s: %w", hdr.KeyID, err)
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return hdr, nil, fmt.Errorf("go-jose: payload is not a JSON object: %w", err)
	}
	return hdr, claims, nil
}

// expectation is what golang-jwt must find in a token.
type expectation struct {
	Alg      string
	Issuer   string
	Audience string
	Subject  string
	// At is the time the token is checked at; zero means now.
	At time.Time
}

// verifyWithGolangJWT checks a token with golang-jwt v5, taking the key from
// set by kid, with the algorithm, issuer, audience and subject required and
// exp, iat and nbf checked at want.At.
func verifyWithGolangJWT(token string, set jose.JSONWebKeySet, want expectation) (*jwt.RegisteredClaims, error) {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{want.Alg}),
		jwt.WithIssuer(want.Issuer),
		jwt.WithAudience(want.Audience),
		jwt.WithSubject(want.Subject),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(2 * time.Second),
	}
	if !want.At.IsZero() {
		at := want.At
		opts = append(opts, jwt.WithTimeFunc(func() time.Time { return at }))
	}
	claims := &jwt.RegisteredClaims{}
	_, err := jwt.NewParser(opts...).ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			return nil, fmt.Errorf("kid %q matches %d keys in the JWKS", kid, len(keys))
		}
		return keys[0].Key, nil
	})
	if err != nil {
		return nil, fmt.Errorf("golang-jwt: %w", err)
	}
	return claims, nil
}
