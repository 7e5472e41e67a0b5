package jwtrotor

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// snapshotRead reads snapshot/<ring> on the active node and holds it to
// docs/api.md (snapshot/<name>), from the model's own record and the
// ring's answer, never the plugin's functions: reading changes nothing;
// the set holds the kid of every token of the ring still live, every key
// keys/<ring> shows pending or active that activates before valid_until,
// and no revoked kid; valid_until is not in the past; the etag is the hash
// of the set's "kid thumbprint" lines.
func (m *model) snapshotRead(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	before := m.dump()
	resp, out := m.do(m.a, logical.ReadOperation, "snapshot/"+ring, nil)
	if !maps.Equal(before, m.dump()) {
		m.t.Fatalf("reading snapshot/%s changed storage", ring)
	}
	if out != ok2xx || resp == nil {
		if r := m.pubRead("keys/" + ring); r != nil && !r.IsError() {
			m.t.Fatalf("snapshot/%s answered %v (%s) though the ring exists", ring, out, respErr(resp))
		}
		return
	}
	now := m.a.b.clock.read().Schedule
	raw, _ := json.Marshal(resp.Data["jwks"])
	kids, ok := jwksKidsOf(raw)
	if !ok {
		m.t.Fatalf("snapshot/%s: jwks does not parse: %s", ring, raw)
	}
	vu, _ := resp.Data["valid_until"].(int64)
	if vu < now {
		m.t.Fatalf("snapshot/%s at %d: valid_until %d is in the past", ring, now, vu)
	}
	for _, tok := range m.tokens {
		if tok.ring != ring || tok.exempt || tok.ahead || now >= tok.exp || tok.rewound > 0 {
			continue
		}
		if !slices.Contains(kids, tok.kid) {
			m.t.Fatalf("snapshot/%s at %d lacks %s, the key of a token live until %d", ring, now, tok.kid, tok.exp)
		}
	}
	r := m.pubRead("keys/" + ring)
	keys, _ := r.Data["signing_keys"].([]map[string]any)
	for _, k := range keys {
		kid := k["kid"].(string)
		rv, _ := k["revoked_at"].(int64)
		at, _ := k["activate_at"].(int64)
		switch {
		case rv != 0 && slices.Contains(kids, kid):
			m.t.Fatalf("snapshot/%s holds revoked key %s", ring, kid)
		case rv == 0 && kid != "" && (k["state"] == "pending" || k["state"] == "active") && at < vu && !slices.Contains(kids, kid):
			m.t.Fatalf("snapshot/%s (valid until %d) lacks %s key %s, which activates at %d", ring, vu, k["state"], kid, at)
		}
	}
	var lines []string
	entries, _ := resp.Data["keys"].([]map[string]any)
	for _, k := range entries {
		lines = append(lines, k["kid"].(string)+" "+k["thumbprint"].(string)+"\n")
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	if want := base64.RawURLEncoding.EncodeToString(sum[:]); resp.Data["etag"] != want || len(entries) != len(kids) {
		m.t.Fatalf("snapshot/%s: etag %v for %d keys (%d in jwks), want %s", ring, resp.Data["etag"], len(entries), len(kids), want)
	}
	modelPubStats.add("snapshot.checked")
}
