package jwtrotor

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// The model test's part for adopted issuers: imports of real keys wrapped
// with the mount's wrapping key (some wrapped for another key, altered, or
// sent plain), trusted public keys (some with private members, some of keys
// the mount holds or held), and the invariants they add: every kid and
// thumbprint names one key across the mount, a key or kid that left the
// mount never comes back (within the history's bounds), and trusted keys
// never sign and leave the JWKS at their expires_at.

// Counts of what the model drew and what was accepted, over every sequence.
var modelAdoptStats struct {
	imports, importsOK, trusts, trustsOK, importedTokens atomic.Int64
}

// importPoolKinds are the kinds of keys the model imports and trusts, from
// pools of their own so that no imported key is also one the model's key
// source generates.
var importPoolKinds = []struct{ kind, alg string }{
	{"EdDSA", "EdDSA"}, {"ES256", "ES256"}, {"ES384", "ES384"}, {"RS256", "RS256"},
}

// modelPoolKey is key i (0 to 5) of an import or trust pool.
func modelPoolKey(t *rapid.T, pool string, kind, i int) *generatedKey {
	k := importPoolKinds[kind]
	bits := 0
	if isRSA(k.alg) {
		bits = 2048
	}
	g, err := sharedKeys.get(pool+"/"+k.kind, k.alg, bits, i)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// goneKey is a key the model saw leave a ring (or revoked), in order.
type goneKey struct {
	kid, tp string
	adopted bool // imported or trusted: remembered forever
	revoked bool
	seq     int // its place among generated keys of its fate
}

// modelAdopt is the model's record of departed keys and of the public keys
// it has seen, by kid.
type modelAdopt struct {
	byID            map[string]*goneKey // by kid and by thumbprint
	revoked, remove int                 // generated keys departed so far
	seen            map[string]crypto.PublicKey
	fresh           int
}

func newModelAdopt() *modelAdopt {
	return &modelAdopt{byID: map[string]*goneKey{}, seen: map[string]crypto.PublicKey{}}
}

// depart records that a key left a ring (or was revoked), once.
func (m *model) depart(kid, tp string, adopted, revoked bool) {
	m.gone[kid] = true
	a := m.adopt
	if g := a.byID[kid]; g != nil {
		return
	}
	g := &goneKey{kid: kid, tp: tp, adopted: adopted, revoked: revoked}
	switch {
	case adopted:
	case revoked:
		g.seq = a.revoked
		a.revoked++
	default:
		g.seq = a.remove
		a.remove++
	}
	a.byID[kid] = g
	if tp != "" {
		a.byID[tp] = g
	}
}

// protected reports whether a departed key with id (kid or thumbprint) is
// still within the history's bounds: adopted keys always, generated keys
// while fewer than the bound (with a margin for the order in which the
// plugin records them) have departed after them.
func (m *model) protected(id string) bool {
	g := m.adopt.byID[id]
	switch {
	case g == nil:
		return false
	case g.adopted:
		return true
	case g.revoked:
		return m.adopt.revoked-g.seq < maxHistoryRevoked-128
	default:
		return m.adopt.remove-g.seq < maxHistoryRemoved-64
	}
}

// trackDepartures records the keys that left each ring since the last
// check, rings in name order and keys in ring order: the order in which the
// plugin records them in its history.
func (m *model) trackDepartures(rings map[string]*ringEntry) {
	for _, name := range modelRings {
		if old := m.prev[name]; old != nil {
			m.departedKeys(old, rings[name])
		}
	}
}

// departedKeys records the keys and trusted keys of old that cur lacks
// (cur nil: the ring is gone).
func (m *model) departedKeys(old, cur *ringEntry) {
	have := map[string]bool{}
	if cur != nil {
		for i := range cur.Keys {
			if !cur.Keys[i].revoked() {
				have[cur.Keys[i].KID] = true
			}
		}
		for i := range cur.Trusted {
			have[cur.Trusted[i].KID] = true
		}
	}
	for i := range old.Keys {
		if k := &old.Keys[i]; !have[k.KID] {
			m.depart(k.KID, k.thumbprint(), k.Imported, k.revoked() || (cur != nil && revokedIn(cur, k.KID)))
		}
	}
	for i := range old.Trusted {
		if t := &old.Trusted[i]; !have[t.KID] {
			m.depart(t.KID, t.Thumbprint, true, false)
		}
	}
}

func revokedIn(r *ringEntry, kid string) bool {
	for i := range r.Keys {
		if r.Keys[i].KID == kid {
			return r.Keys[i].revoked()
		}
	}
	return false
}

// checkIdentities: across the mount, every kid and thumbprint names one
// key (signing keys, tombstones and trusted keys alike); no key that is in
// a ring and not revoked carries the kid or the key of a departed one; the
// trusted keys of a ring are within their bounds.
func (m *model) checkIdentities(rings map[string]*ringEntry) {
	owner := map[string]string{}
	claim := func(id, who string) {
		if prev, ok := owner[id]; ok && prev != who {
			m.t.Fatalf("%s names two keys: %s and %s", id, prev, who)
		}
		owner[id] = who
	}
	for name, r := range rings {
		for i := range r.Keys {
			k := &r.Keys[i]
			who := "key " + k.KID + " of ring " + name
			claim(k.KID, who)
			claim(k.thumbprint(), who)
			if k.PublicJWK != nil {
				m.remember(k.KID, k.PublicJWK)
			}
			if !k.revoked() && (m.protected(k.KID) || m.protected(k.thumbprint())) {
				m.t.Fatalf("%s reuses the kid or the key of a key that left the mount", who)
			}
		}
		if len(r.Trusted) > maxTrustedKeys {
			m.t.Fatalf("ring %s trusts %d keys, above %d", name, len(r.Trusted), maxTrustedKeys)
		}
		for i := range r.Trusted {
			t := &r.Trusted[i]
			who := "trusted key " + t.KID + " of ring " + name
			claim(t.KID, who)
			claim(t.Thumbprint, who)
			m.remember(t.KID, t.PublicJWK)
			if m.protected(t.KID) || m.protected(t.Thumbprint) {
				m.t.Fatalf("%s reuses the kid or the key of a key that left the mount", who)
			}
			if t.ExpiresAt <= t.AddedAt || t.ExpiresAt-t.AddedAt > maxTrustPeriodSeconds {
				m.t.Fatalf("%s is published from %d to %d, past the %ds bound", who, t.AddedAt, t.ExpiresAt, maxTrustPeriodSeconds)
			}
		}
	}
}

// remember keeps the public key of kid, so trust can offer it again.
func (m *model) remember(kid string, jwk []byte) {
	if _, ok := m.adopt.seen[kid]; ok {
		return
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(jwk); err == nil {
		m.adopt.seen[kid] = k.Key
	}
}

// liveIDs are the kids and thumbprints in the mount's rings now.
func (m *model) liveIDs() map[string]bool {
	ids := map[string]bool{}
	for _, name := range modelRings {
		r := m.ring(name)
		if r == nil {
			continue
		}
		for i := range r.Keys {
			ids[r.Keys[i].KID], ids[r.Keys[i].thumbprint()] = true, true
		}
		for i := range r.Trusted {
			ids[r.Trusted[i].KID], ids[r.Trusted[i].Thumbprint] = true, true
		}
	}
	return ids
}

// drawKID draws the kid of a key to adopt: none (its thumbprint), a fresh
// name, a kid that left the mount, a kid live in the mount, or a kid
// outside the syntax.
func (m *model) drawKID(t *rapid.T) (string, bool) {
	choice := rapid.IntRange(0, 19).Draw(t, "kid-choice")
	index := rapid.IntRange(0, 31).Draw(t, "kid-pick")
	switch {
	case choice <= 6:
		return "", false
	case choice <= 12:
		m.adopt.fresh++
		return fmt.Sprintf("legacy-%d", m.adopt.fresh), true
	case choice <= 15:
		var gone []string
		for id, g := range m.adopt.byID {
			if id == g.kid {
				gone = append(gone, id)
			}
		}
		if len(gone) == 0 {
			return "", false
		}
		sortStrings(gone)
		return gone[index%len(gone)], true
	case choice <= 18:
		var live []string
		for id := range m.liveIDs() {
			live = append(live, id)
		}
		if len(live) == 0 {
			return "", false
		}
		sortStrings(live)
		return live[index%len(live)], true
	}
	return "bad kid", true
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// checkAdoptOutcome compares the plugin's answer about a key's identity
// with the model's: a key or kid the model knows as taken (live, or departed
// and within the bounds) is refused, and a refusal for identity names one
// the model knows as taken or departed.
func (m *model) checkAdoptOutcome(what string, resp *logical.Response, out outcome, kid, tp string, live map[string]bool) {
	taken := live[tp] || m.protected(tp) || (kid != "" && (live[kid] || m.protected(kid)))
	if out == ok2xx && taken {
		m.t.Fatalf("%s of kid %q (thumbprint %s) was accepted, but the mount holds or held that kid or key", what, kid, tp)
	}
	if out != bad4xx || resp == nil || !resp.IsError() {
		return
	}
	msg := resp.Error().Error()
	if strings.Contains(msg, "never comes back") || strings.Contains(msg, "never used again") || strings.Contains(msg, "published once per mount") || strings.Contains(msg, "kids are unique") {
		known := live[tp] || m.adopt.byID[tp] != nil || (kid != "" && (live[kid] || m.adopt.byID[kid] != nil))
		if !known {
			m.t.Fatalf("%s of kid %q was refused for its identity (%s), but the model knows no such key or kid", what, kid, msg)
		}
	}
}

// importKey imports a pool key into a ring, usually well wrapped, with the
// settings the model's rings use.
func (m *model) importKey(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	kind := rapid.IntRange(0, len(importPoolKinds)-1).Draw(t, "kind")
	index := rapid.IntRange(0, 5).Draw(t, "key-index")
	kid, kidSet := m.drawKID(t)
	wrongAlg := rapid.IntRange(0, 9).Draw(t, "wrong-alg") == 0
	wrapping := rapid.IntRange(0, 19).Draw(t, "wrapping")
	period := rapid.SampledFrom([]int{10, 20, 60, 600, 3600}).Draw(t, "period")
	overlapTenths := rapid.SampledFrom([]int{2, 5, 10, 30}).Draw(t, "overlap-tenths")
	role := rapid.SampledFrom(append([]string{""}, modelRoles...)).Draw(t, "role")
	key := modelPoolKey(t, "import", kind, index)
	alg := key.Alg
	if wrongAlg {
		alg = importPoolKinds[(kind+1)%len(importPoolKinds)].alg
	}
	// A lead the mount's jwks_max_age allows, and an overlap within the
	// ring's bound, as an operator would choose them.
	maxAge := int(defaultJWKSMaxAgeSeconds)
	if c, err := readConfig(context.Background(), &m.s.InmemStorage); err == nil {
		maxAge = int(c.JWKSMaxAge)
	}
	lead := max(period, 2*maxAge)
	overlap := max(61, min(period*overlapTenths/10, 10*period-lead))
	data := map[string]any{"algorithm": alg, "rotation_period": period, "publish_lead": lead, "verification_ttl": overlap}
	if kidSet {
		data["kid"] = kid
	}
	resp, _ := m.do(m.a, logical.ReadOperation, "wrapping_key", nil)
	if resp == nil {
		return // a storage fault
	}
	block, _ := pem.Decode([]byte(resp.Data["public_key"].(string)))
	parsed, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		m.t.Fatal(err)
	}
	pub := parsed.(*rsa.PublicKey)
	switch wrapping {
	case 0:
		pub = &testWrappingKey(1).PublicKey // another mount's
	case 1:
		data["ciphertext"] = base64.StdEncoding.EncodeToString(key.PKCS8) // plain
	}
	if data["ciphertext"] == nil {
		ct, err := wrapImportCiphertext(pub, key.PKCS8)
		if err != nil {
			m.t.Fatal(err)
		}
		if wrapping == 2 {
			raw, _ := base64.StdEncoding.DecodeString(ct)
			raw[len(raw)-5] ^= 1 // altered
			ct = base64.StdEncoding.EncodeToString(raw)
		}
		data["ciphertext"] = ct
	}
	live := m.liveIDs()
	exists := m.ring(ring) != nil
	modelAdoptStats.imports.Add(1)
	resp, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/import", data)
	m.checkAdoptOutcome("import", resp, out, kid, key.KID, live)
	if out != ok2xx {
		return
	}
	modelAdoptStats.importsOK.Add(1)
	if exists || wrapping <= 2 || wrongAlg || kid == "bad kid" {
		m.t.Fatalf("an import that must be refused was accepted (ring existed %v, wrapping %d, wrong alg %v, kid %q)", exists, wrapping, wrongAlg, kid)
	}
	want := kid
	if !kidSet {
		want = key.KID
	}
	r := m.ring(ring)
	a := activeIndex(r.Keys, m.opNow)
	if a < 0 || r.Keys[a].KID != want || !r.Keys[a].Imported || r.Keys[a].thumbprint() != key.KID || resp.Data["kid"] != want {
		m.t.Fatalf("after importing %s into %s the active key is %v", want, ring, keysSummary(r.Keys))
	}
	// Point a role at the new ring, and sign: the imported key's tokens
	// join the ledger whose overlap every later step checks.
	if role != "" {
		maxTTL := max(1, min(300, overlap-int(clockSkewSeconds)))
		if _, out := m.do(m.a, logical.UpdateOperation, "roles/"+role, map[string]any{"key": ring, "audiences": []any{"api"}, "max_ttl": maxTTL, "ttl": maxTTL}); out == ok2xx {
			if resp, out := m.do(m.a, logical.UpdateOperation, "sign/"+role, map[string]any{}); out == ok2xx {
				if resp.Data["kid"] != want {
					m.t.Fatalf("ring %s signs with %v right after importing %s", ring, resp.Data["kid"], want)
				}
				m.record(m.a, role, resp.Data)
			}
		}
	}
}

// trustKey trusts a public key: from a pool of its own, of a key the model
// may import, or one the mount published; as a JWK (object or text, now and
// then with a private member) or PEM.
func (m *model) trustKey(t *rapid.T) {
	ringIndex := rapid.IntRange(0, len(modelRings)-1).Draw(t, "ring-index")
	source := rapid.IntRange(0, 9).Draw(t, "source")
	kind := rapid.IntRange(0, len(importPoolKinds)-1).Draw(t, "kind")
	index := rapid.IntRange(0, 5).Draw(t, "key-index")
	seenIndex := rapid.IntRange(0, 63).Draw(t, "seen-index")
	kid, kidSet := m.drawKID(t)
	form := rapid.IntRange(0, 19).Draw(t, "form")
	ttl := rapid.SampledFrom([]int64{-1, 30, 120, 600, 600, 3600, 3600, 86400, maxTrustPeriodSeconds, maxTrustPeriodSeconds + 1}).Draw(t, "ttl")
	// Mostly a ring that exists: trust goes with an import.
	ring := modelRings[ringIndex]
	var existing []string
	for _, name := range modelRings {
		if r := m.ring(name); r != nil && r.DeletedAt == 0 {
			existing = append(existing, name)
		}
	}
	if len(existing) > 0 && ringIndex > 0 {
		ring = existing[ringIndex%len(existing)]
	}
	var pub crypto.PublicKey
	var alg string
	var priv crypto.Signer
	switch {
	case source <= 5:
		g := modelPoolKey(t, "trust", kind, index)
		pub, alg, priv = g.Private.Public(), g.Alg, g.Private
	case source <= 7:
		g := modelPoolKey(t, "import", kind, index)
		pub, alg, priv = g.Private.Public(), g.Alg, g.Private
	default:
		var kids []string
		for k := range m.adopt.seen {
			kids = append(kids, k)
		}
		if len(kids) == 0 {
			return
		}
		sortStrings(kids)
		pub = m.adopt.seen[kids[seenIndex%len(kids)]]
		alg = algsFor(pub)
		if strings.Contains(alg, ",") {
			alg = "RS256"
		}
	}
	tp := thumbprintOfModel(m.t, pub)
	if !kidSet {
		kid = tp
	}
	now := m.a.b.clock.read().Schedule
	data := map[string]any{"expires_at": now + ttl}
	withPrivate := false
	switch {
	case form <= 12:
		j, _ := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: alg, Use: "sig"})
		var obj map[string]any
		_ = json.Unmarshal(j, &obj)
		data["jwk"] = obj
		if form == 12 {
			data["jwk"] = string(j)
		}
	case form <= 17:
		der, _ := x509.MarshalPKIXPublicKey(pub)
		data["pem"] = string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		data["kid"], data["alg"] = kid, alg
	default:
		if priv == nil {
			return
		}
		withPrivate = true
		j, _ := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: alg})
		var obj map[string]any
		_ = json.Unmarshal(j, &obj)
		data["jwk"] = obj
	}
	live := m.liveIDs()
	modelAdoptStats.trusts.Add(1)
	resp, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring+"/trust", data)
	m.checkAdoptOutcome("trust", resp, out, kid, tp, live)
	if out != ok2xx {
		return
	}
	modelAdoptStats.trustsOK.Add(1)
	if withPrivate || ttl <= 0 || ttl > maxTrustPeriodSeconds || kid == "bad kid" {
		m.t.Fatalf("a trust that must be refused was accepted (private %v, ttl %d, kid %q)", withPrivate, ttl, kid)
	}
	// It is served now, rebuilt from the key: nothing private, its own kid.
	_, body := m.fetchDoc(m.a, "jwks/"+ring)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		m.t.Fatal(err)
	}
	found := set.Key(kid)
	if len(found) != 1 || !found[0].IsPublic() || found[0].Algorithm != alg {
		m.t.Fatalf("trusted key %s is not served once, public, with alg %s: %s", kid, alg, body)
	}
}

func thumbprintOfModel(t *rapid.T, pub crypto.PublicKey) string {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// trustedKIDs are the kids of ring's trusted keys, for revoke to draw from.
func (m *model) trustedKIDs(ring string) []string {
	var out []string
	if r := m.ring(ring); r != nil {
		for i := range r.Trusted {
			out = append(out, r.Trusted[i].KID)
		}
	}
	return out
}

var _ = context.Background
