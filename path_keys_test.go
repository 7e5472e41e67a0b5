package jwtrotor

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Ring delete rules: refused while a role uses the ring; otherwise the ring
// stops signing at once and its keys leave at their remove_at (force: now).
func TestKeyDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	before := dump(t, e.storage)
	resp, err := e.do(logical.DeleteOperation, "keys/k", nil)
	expect400(t, resp, err, "name", `role(s) r`)
	sameStorage(t, before, dump(t, e.storage))

	token := e.mustWrite("sign/r", nil).Data["token"].(string)
	e.do(logical.DeleteOperation, "roles/r", nil)
	if _, err := e.do(logical.DeleteOperation, "keys/k", nil); err != nil {
		t.Fatal(err)
	}
	if e.read("keys/k") != nil {
		t.Fatal("a deleted ring still reads")
	}
	_, body, _ := e.jwks("jwks")
	if _, err := verifyJose(t, token, body, e.clock.Now()); err != nil {
		t.Fatalf("a token of a deleted ring must verify until its key's remove_at: %v", err)
	}
	resp, err = e.write("keys/k", map[string]any{"algorithm": "ES256"})
	expect400(t, resp, err, "name", "force=true")
	e.clock.Advance(2*60*60*1e9 + 1e9)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if _, ok := dump(t, e.storage)["rings/k"]; ok {
		t.Fatal("a drained ring was not deleted")
	}
	for k := range dump(t, e.storage) {
		if strings.HasPrefix(k, privatePrefix) {
			t.Fatalf("%s survived its ring", k)
		}
	}

	// force=true: out of the JWKS at once.
	e.setupRing("f", "ES256", nil)
	if _, err := e.do(logical.DeleteOperation, "keys/f", map[string]any{"force": true}); err != nil {
		t.Fatal(err)
	}
	_, body, _ = e.jwks("jwks")
	if len(kidsOf(t, body)) != 0 {
		t.Fatalf("force delete left keys: %s", body)
	}
	for k := range dump(t, e.storage) {
		if strings.HasPrefix(k, "rings/f") || strings.HasPrefix(k, privatePrefix+"f/") {
			t.Fatalf("%s survived a forced delete", k)
		}
	}
}

// A ring reads back its settings exactly as written, then its computed
// state: every key with its timestamps, the active and pending kid, and the
// next rotation.
func TestRingReadsBackSettingsAndState(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
	resp := e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	if len(resp.Warnings) == 0 {
		t.Fatal("creating a ring must say when its first key signs")
	}
	d := e.read("keys/k").Data
	for field, want := range map[string]any{"algorithm": "EdDSA", "rsa_bits": defaultRSABits, "rotation_period": int64(3600),
		"publish_lead": int64(600), "verification_ttl": int64(7200), "min_verifier_coverage": 0.0, "max_activation_delay": int64(0)} {
		if d[field] != want {
			t.Errorf("%s = %#v, want %#v", field, d[field], want)
		}
	}
	if d["active_kid"] != "" || d["pending_kid"] == "" {
		t.Fatalf("a new ring has no active key and a pending one: %v", d)
	}
	now := e.clock.Now().Unix()
	if d["next_rotation"] != now+600 {
		t.Fatalf("next_rotation %v, want %d (created + publish_lead)", d["next_rotation"], now+600)
	}
	keys := d["signing_keys"].([]map[string]any)
	if len(keys) != 2 || keys[0]["state"] != statePending || keys[0]["activate_at"] != now+600 {
		t.Fatalf("signing_keys %v", keys)
	}
	// An update changes what it names and keeps publish_lead.
	e.mustWrite("keys/k", map[string]any{"rotation_period": "2h"})
	if d := e.read("keys/k").Data; d["rotation_period"] != int64(7200) || d["publish_lead"] != int64(600) {
		t.Fatalf("after an update: %v", d)
	}
	if e.read("keys/nope") != nil {
		t.Fatal("a ring that does not exist must read as nothing (404)")
	}
}

// keys/<name> reads well in vault read's table: key_summary has one line
// per key, signing keys in signing_keys' order then trusted keys, each
// saying the same as the structured fields (RFC 3339 times, - for not
// scheduled), with no nested map for the table to print as a Go map.
func TestKeySummaryMatchesSigningKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	data := e.read("keys/k").Data
	keys := data["signing_keys"].([]map[string]any)
	lines := data["key_summary"].([]string)
	if len(keys) < 3 || len(lines) != len(keys) {
		t.Fatalf("%d signing keys, %d summary lines: %q", len(keys), len(lines), lines)
	}
	at := func(v any) string {
		if v.(int64) == 0 {
			return "-"
		}
		return time.Unix(v.(int64), 0).UTC().Format(time.RFC3339)
	}
	for i, k := range keys {
		want := fmt.Sprintf("kid=%s state=%s alg=ES256 publish_at=%s activate_at=%s retire_at=%s remove_at=%s",
			k["kid"], k["state"], at(k["publish_at"]), at(k["activate_at"]), at(k["retire_at"]), at(k["remove_at"]))
		if k["forced"].(bool) {
			want += " forced"
		}
		if lines[i] != want {
			t.Errorf("line %d: %q, want %q", i, lines[i], want)
		}
	}
	// The first key signed at once (forced), the second was forced too.
	if !strings.HasSuffix(lines[0], " forced") || !strings.Contains(lines[1], "state=active") {
		t.Errorf("summary %q", lines)
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\n[]{}") || strings.Contains(l, "map") {
			t.Errorf("line %q would not read as one table line", l)
		}
	}
}
