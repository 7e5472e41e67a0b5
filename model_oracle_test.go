package jwtrotor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4/jwt"
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
	if n.b.clock.read().Held > 0 {
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
