package jwtrotor

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// snapshotRead reads snapshot/<ring> and returns its data with the kids
// of its jwks.
func (e *testEnv) snapshotRead(ring string) (map[string]any, []string) {
	e.t.Helper()
	d := e.read("snapshot/" + ring).Data
	raw, err := json.Marshal(d["jwks"])
	if err != nil {
		e.t.Fatal(err)
	}
	return d, kidsOf(e.t, raw)
}

// A snapshot read at any time holds the kid of every token the ring signed
// that is still live, and the kid of every token the ring signs, by its
// schedule, until valid_until, which is always in the future; past
// valid_until the ring signs with a key the snapshot lacks. Followed hour
// by hour through a day of rotations (1 h period, 2 h verification_ttl),
// with maintenance every minute. Reading changes nothing.
func TestSnapshotCoversLiveTokensAndTheScheduleUntilValidUntil(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	type token struct {
		kid string
		exp int64
	}
	var tokens []token
	type taken struct {
		kids       []string
		validUntil int64
	}
	var snaps []taken
	outside := 0
	e.simulate(24*time.Hour, time.Minute, time.Minute, func(now time.Time) {
		resp := e.mustWrite("sign/r", nil)
		kid, exp := resp.Data["kid"].(string), resp.Data["expires_at"].(int64)
		tokens = append(tokens, token{kid, exp})
		for _, s := range snaps {
			if now.Unix() < s.validUntil && !slices.Contains(s.kids, kid) {
				t.Fatalf("at %d, the ring signs with %s, which a snapshot valid until %d lacks (%v)", now.Unix(), kid, s.validUntil, s.kids)
			}
			if now.Unix() >= s.validUntil && !slices.Contains(s.kids, kid) {
				outside++
			}
		}
		if now.Minute() != 0 && now.Minute() != 37 {
			return
		}
		before := dump(t, e.storage)
		d, kids := e.snapshotRead("k")
		if !maps.Equal(before, dump(t, e.storage)) {
			t.Fatal("reading a snapshot changed storage")
		}
		vu := d["valid_until"].(int64)
		if vu <= now.Unix() {
			t.Fatalf("at %d, valid_until %d is not in the future", now.Unix(), vu)
		}
		for _, tok := range tokens {
			if tok.exp > now.Unix() && !slices.Contains(kids, tok.kid) {
				t.Fatalf("at %d, a snapshot lacks %s, the key of a token live until %d", now.Unix(), tok.kid, tok.exp)
			}
		}
		snaps = append(snaps, taken{kids, vu})
	})
	if outside == 0 {
		t.Fatal("no token was ever signed past a snapshot's valid_until with a key it lacks: valid_until is not the bound it says")
	}
}

// The etag is what docs/api.md says: the base64url SHA-256 of the set's
// "kid thumbprint" lines, sorted, each ended by a newline; the same set
// reads the same etag, and a rotation changes it. pem holds the same
// public keys as jwks, in its order; keys gives each key's window as
// keys/<ring> does, and a trusted key as trusted. A revoked key is in none.
func TestSnapshotETagPEMAndWindows(t *testing.T) {
	t.Parallel()
	e := opsEnv(t)
	now := e.clock.Now().Unix()
	e.mustWrite("keys/k/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "Ed25519").Public(), "old-1", "EdDSA", nil), "expires_at": now + 3600})
	pending := e.read("keys/k").Data["pending_kid"].(string)
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	e.mustWrite("keys/k/revoke", map[string]any{"kid": e.read("keys/k").Data["pending_kid"].(string)})
	d, kids := e.snapshotRead("k")
	if d2, _ := e.snapshotRead("k"); d2["etag"] != d["etag"] {
		t.Fatalf("the same set read etags %v and %v", d["etag"], d2["etag"])
	}
	ring := e.read("keys/k").Data
	want := map[string]map[string]any{}
	for _, k := range ring["signing_keys"].([]map[string]any) {
		if k["revoked_at"].(int64) == 0 {
			want[k["kid"].(string)] = k
		} else if slices.Contains(kids, k["kid"].(string)) {
			t.Fatalf("the snapshot holds revoked key %s", k["kid"])
		}
	}
	var lines []string
	for _, k := range d["keys"].([]map[string]any) {
		kid := k["kid"].(string)
		lines = append(lines, kid+" "+k["thumbprint"].(string)+"\n")
		if k["trusted"].(bool) {
			if kid != "old-1" || k["remove_at"].(int64) != now+3600 {
				t.Fatalf("trusted key %v", k)
			}
			continue
		}
		w := want[kid]
		if w == nil {
			t.Fatalf("the snapshot has key %s, which keys/k does not have live", kid)
		}
		for _, f := range []string{"activate_at", "retire_at", "remove_at", "thumbprint", "alg"} {
			if k[f] != w[f] {
				t.Fatalf("key %s: %s is %v in the snapshot and %v in keys/k", kid, f, k[f], w[f])
			}
		}
		delete(want, kid)
	}
	if len(want) != 0 || !slices.Contains(kids, pending) || !slices.Contains(kids, "old-1") {
		t.Fatalf("the snapshot (%v) lacks live keys %v", kids, slices.Collect(maps.Keys(want)))
	}
	slices.Sort(lines)
	sum := sha256.Sum256([]byte(strings.Join(lines, "")))
	if d["etag"] != base64.RawURLEncoding.EncodeToString(sum[:]) {
		t.Fatalf("etag %v, want the hash of %q", d["etag"], lines)
	}
	// pem: the jwks' public keys, in order.
	var set jose.JSONWebKeySet
	raw, _ := json.Marshal(d["jwks"])
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	rest := []byte(d["pem"].(string))
	for i, k := range set.Keys {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil || block.Type != "PUBLIC KEY" {
			t.Fatalf("pem block %d missing or of type %v", i, block)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !k.Key.(interface{ Equal(crypto.PublicKey) bool }).Equal(pub) {
			t.Fatalf("pem block %d is not the key of %s", i, k.KeyID)
		}
	}
	if strings.TrimSpace(string(rest)) != "" {
		t.Fatalf("pem has more blocks than jwks has keys: %q", rest)
	}
	// A rotation changes the set, and the etag.
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	if d3, _ := e.snapshotRead("k"); d3["etag"] == d["etag"] {
		t.Fatal("a forced rotation left the etag as it was")
	}
}

// profile refuses a set the named verifier cannot take, naming the ring;
// a ring that does not exist reads nothing.
func TestSnapshotProfileAndMissingRing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("ed", "EdDSA", nil)
	e.setupRing("rsa", "RS256", nil)
	resp, err := e.do("read", "snapshot/ed", map[string]any{"profile": "aws"})
	expect400(t, resp, err, "profile", `ring "ed"`, "profile=aws")
	resp, err = e.do("read", "snapshot/ed", map[string]any{"profile": "entra"})
	expect400(t, resp, err, "profile", "generic, aws, gcp, azure")
	if resp, err := e.do("read", "snapshot/rsa", map[string]any{"profile": "azure"}); err != nil || resp == nil || resp.IsError() {
		t.Fatalf("an RS256 ring's snapshot for azure: %v %s", err, respErr(resp))
	}
	if resp, err := e.do("read", "snapshot/none", nil); err != nil || resp != nil {
		t.Fatalf("a missing ring's snapshot: %v %v", resp, err)
	}
}
