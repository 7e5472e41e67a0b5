package jwtrotor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/vault/sdk/logical"
)

// The model's own judgement of requests, written from docs/api.md rather
// than from the plugin's code: which requests must succeed, and what every
// token must carry.

// signMustSucceed says why a sign request on role with data must succeed
// on node n ("" if the docs allow a refusal): the issuer is set, the role
// and its ring exist, the ring has a key active at the node's schedule
// time, and every field the request names is within the role. Signing
// never fails because the schedule is held (docs/invariants.md, time).
func (m *model) signMustSucceed(n *modelNode, role string, data map[string]any) string {
	conf, _ := readConfig(context.Background(), &m.s.InmemStorage)
	r := m.role(role)
	if conf == nil || conf.Issuer == "" || r == nil || (strings.Contains(r.SubjectTemplate, "{{") && !slices.Contains(entityTemplates, r.SubjectTemplate)) {
		return ""
	}
	ring := m.ring(r.Key)
	if ring == nil || ring.DeletedAt != 0 || !hasActiveKey(ring.Keys, n.b.clock.read().Schedule) {
		return ""
	}
	for field, v := range data {
		switch field {
		case "ttl":
			ttl, ok := v.(int64)
			if i, isInt := v.(int); isInt {
				ttl, ok = int64(i), true
			}
			if !ok || ttl < 1 || ttl > r.MaxTTL {
				return ""
			}
		case "audience":
			if s, ok := v.(string); !ok || !slices.Contains(r.Audiences, s) {
				return ""
			}
		default:
			return ""
		}
	}
	modelReachStats.mustSign.Add(1)
	if n.b.clock.read().HeldSeconds > 0 {
		modelReachStats.mustSignHeld.Add(1)
	}
	return fmt.Sprintf("role %s (ring %s, max_ttl %d, audiences %v), issuer set, an active key, request %v", role, r.Key, r.MaxTTL, r.Audiences, data)
}

// entityTemplates resolve for the model's caller, which has an entity.
var entityTemplates = []string{"{{identity.entity.id}}", "{{identity.entity.name}}"}

// hasActiveKey: some unrevoked key has activated and not retired at now
// (docs/lifecycle.md, states).
func hasActiveKey(keys []signingKey, now int64) bool {
	for _, k := range keys {
		if k.RevokedAt == 0 && k.ActivateAt <= now && (k.RetireAt == 0 || now < k.RetireAt) {
			return true
		}
	}
	return false
}

// checkRolePolicy: a token carries the configured issuer, one or more of
// its role's audiences, and lives at most the role's max_ttl.
func (m *model) checkRolePolicy(role string, claims jwt.Claims) {
	r := m.role(role)
	conf, _ := readConfig(context.Background(), &m.s.InmemStorage)
	if r == nil || conf == nil {
		m.t.Fatalf("a token was signed for role %s without a stored role and config", role)
	}
	if claims.Issuer != conf.Issuer {
		m.t.Fatalf("a token of role %s carries iss %q, not the configured %q", role, claims.Issuer, conf.Issuer)
	}
	if len(claims.Audience) == 0 {
		m.t.Fatalf("a token of role %s carries no aud", role)
	}
	for _, a := range claims.Audience {
		if !slices.Contains(r.Audiences, a) {
			m.t.Fatalf("a token of role %s carries aud %q, not one of %v", role, a, r.Audiences)
		}
	}
	if life := int64(*claims.Expiry - *claims.IssuedAt); life > r.MaxTTL || life < 1 {
		m.t.Fatalf("a token of role %s lives %d s; max_ttl is %d", role, life, r.MaxTTL)
	}
}

// checkCaching holds a JWKS or discovery answer to docs/api.md's caching
// rules: max-age within jwks_max_age and the next removal, lowered by at
// most a tenth; stale-if-error the shortest publish_lead of the rings served
// that are not being deleted; a strong ETag from the body's SHA-256, equal
// for equal bodies on every node; and a 304, with the same tag and no body,
// to a request that names it.
func (m *model) checkCaching(n *modelNode, path string, resp *logical.Response, body []byte, served []*ringEntry, removal, now int64) {
	conf, _ := readConfig(context.Background(), &m.s.InmemStorage)
	maxAge := defaultJWKSMaxAgeSeconds
	if conf != nil {
		maxAge = conf.JWKSMaxAge
	}
	cc, _ := resp.Data[logical.HTTPCacheControlHeader].(string)
	var got, stale int64
	if _, err := fmt.Sscanf(cc, "public, max-age=%d, stale-if-error=%d", &got, &stale); err != nil {
		m.t.Fatalf("%s: %s: Cache-Control %q", n.name, path, cc)
	}
	base := maxAge
	if removal != forever {
		base = min(base, removal-now)
	}
	low := base
	if base > 10 {
		low = base - base/10 - 1
	}
	if got < max(1, min(low, base)) || got > max(1, base) {
		m.t.Fatalf("%s at %d: %s max-age %d, want %d..%d (jwks_max_age %d, next removal %d)", n.name, now, path, got, low, base, maxAge, removal)
	}
	wantStale := int64(-1)
	for _, r := range served {
		if r.DeletedAt == 0 && (wantStale < 0 || r.PublishLead < wantStale) {
			wantStale = r.PublishLead
		}
	}
	if wantStale < 0 {
		wantStale = maxAge
	}
	if stale != wantStale {
		m.t.Fatalf("%s: %s stale-if-error=%d, want the shortest publish_lead of the rings served, %d", n.name, path, stale, wantStale)
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	if tags := resp.Headers["ETag"]; len(tags) != 1 || tags[0] != etag {
		m.t.Fatalf("%s: %s ETag %v, want %s (the body's SHA-256)", n.name, path, resp.Headers["ETag"], etag)
	}
	again, err := n.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: path, Storage: m.s,
		Headers:    map[string][]string{"If-None-Match": {etag}},
		Connection: &logical.Connection{RemoteAddr: "203.0.113.250:1"},
	})
	if err != nil || again == nil || again.Data[logical.HTTPStatusCode] != 304 {
		m.t.Fatalf("%s: %s with If-None-Match %s: %v %v, want 304", n.name, path, etag, err, again)
	}
	if b, _ := again.Data[logical.HTTPRawBody].([]byte); len(b) != 0 || again.Headers["ETag"][0] != etag {
		m.t.Fatalf("%s: %s 304 carries a body of %d bytes or another tag %v", n.name, path, len(b), again.Headers["ETag"])
	}
}

// checkDiscovery: the discovery document names the configured issuer and
// <issuer>/jwks, lists RS256 and the algorithm of every key served, and is
// cached like the JWKS; a 404 until the issuer is set.
func (m *model) checkDiscovery(n *modelNode, rings map[string]*ringEntry, mount []byte, removal, now int64) {
	conf, _ := readConfig(context.Background(), &m.s.InmemStorage)
	resp, body := m.fetchDoc(n, ".well-known/openid-configuration")
	if conf == nil || conf.Issuer == "" {
		if resp != nil {
			m.t.Fatalf("%s: discovery answered without an issuer", n.name)
		}
		return
	}
	if resp == nil {
		m.t.Fatalf("%s: no discovery document with issuer %q set", n.name, conf.Issuer)
	}
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		m.t.Fatalf("%s: discovery: %v", n.name, err)
	}
	if doc.Issuer != conf.Issuer || doc.JWKSURI != conf.Issuer+"/jwks" || !slices.Contains(doc.Algs, "RS256") {
		m.t.Fatalf("%s: discovery %s, want issuer %q, jwks_uri %q and RS256 listed", n.name, body, conf.Issuer, conf.Issuer+"/jwks")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(mount, &set); err != nil {
		m.t.Fatalf("%s: JWKS: %v", n.name, err)
	}
	for _, k := range set.Keys {
		if !slices.Contains(doc.Algs, k.Algorithm) {
			m.t.Fatalf("%s: discovery lists %v, not %s of served key %s", n.name, doc.Algs, k.Algorithm, k.KeyID)
		}
	}
	var all []*ringEntry
	for _, r := range rings {
		all = append(all, r)
	}
	m.checkCaching(n, ".well-known/openid-configuration", resp, body, all, removal, now)
}

// checkLiveKids: every live token's kid is served by each node's mount
// JWKS, from its iat to its exp (less a restart's documented rewind);
// tokens of revoked keys and dropped rings are exempt, and so are a
// standby's tokens signed while its schedule ran ahead of the active
// node's, whose keys the active node may retire at its own, earlier, time
// (as checkTokens treats them).
func (m *model) checkLiveKids(n *modelNode, mount []byte, now int64) {
	served := map[string]bool{}
	for _, k := range kidsOf(m.t, mount) {
		served[k] = true
	}
	for _, tok := range m.tokens {
		if tok.exempt || tok.ahead || now < tok.iat || now >= tok.exp-tok.rewound {
			continue
		}
		if !served[tok.kid] {
			m.t.Fatalf("%s at %d: the JWKS does not serve %s, the key of a token live from %d until %d", n.name, now, tok.kid, tok.iat, tok.exp)
		}
	}
}

// checkFuture: at every future timestamp of a ring's keys, at most one key
// signs (docs/invariants.md: one signer at a time, also as scheduled).
func checkFuture(t fataler, name string, keys []signingKey, now int64) {
	for _, k := range keys {
		for _, at := range []int64{k.ActivateAt, k.RetireAt} {
			if at < now {
				continue
			}
			signers := 0
			for i := range keys {
				if keys[i].RevokedAt == 0 && keys[i].ActivateAt <= at && (keys[i].RetireAt == 0 || at < keys[i].RetireAt) {
					signers++
				}
			}
			if signers > 1 {
				t.Fatalf("ring %s would have %d signing keys at %d", name, signers, at)
			}
		}
	}
}

// checkNoSecrets: no response carries private key material: no JWK private
// member, no PEM private key.
func (m *model) checkNoSecrets(path string, resp *logical.Response) {
	if resp == nil {
		return
	}
	b, err := json.Marshal(resp.Data)
	if err != nil {
		return
	}
	if raw, ok := resp.Data[logical.HTTPRawBody].([]byte); ok {
		b = append(b, raw...)
	}
	for _, bad := range []string{`"d":"`, `\"d\":\"`, "PRIVATE KEY", `"p":"`, `"dp":"`} {
		if bytes.Contains(b, []byte(bad)) {
			m.t.Fatalf("%s answered private key material (%s)", path, bad)
		}
	}
}
