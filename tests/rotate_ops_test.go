package tests

import (
	"net/http"
	"testing"
	"time"
)

// TestRotateOperations drives keys/<name>/rotate by hand: a new ring's key
// waits its lead, force skips it with a warning, expected_active_kid guards
// re-applies, and a plain rotate schedules the pending key at the end of its
// lead instead of activating it at once. The response describes the ring
// right after the call: active_kid signs now, pending_kid is the next key to
// activate, at activates_at.
func TestRotateOperations(t *testing.T) {
	t.Parallel()
	const lead = 600
	m := newMount(t, "rotate-ops", map[string]any{"jwks_max_age": 60})
	env.root.mustWrite(t, m.p("keys/ops"), map[string]any{
		"algorithm":        "ES256",
		"rotation_period":  "1h",
		"publish_lead":     "10m",
		"verification_ttl": "2h",
	})

	fresh := readRing(t, m, "ops")
	first, ok := fresh.nextPending()
	if !ok || len(fresh.inState("active")) != 0 {
		t.Fatalf("new ring: want only pending keys, got %+v", fresh.SigningKeys)
	}
	if first.ActivateAt-first.PublishAt < lead {
		t.Errorf("new ring's first key activates %ds after it is published, publish_lead is %ds", first.ActivateAt-first.PublishAt, lead)
	}
	if !fetchJWKS(t, m, "jwks/ops").has(first.Kid) {
		t.Errorf("the first key %s is pending but not in the JWKS", first.Kid)
	}
	// Signing must wait for the lead.
	createRole(t, m, "ops", map[string]any{"key": "ops", "audiences": []string{apiAudience}})
	if resp := env.signer.write(t, m.p("sign/ops"), map[string]any{}); resp.Status < 400 {
		t.Errorf("signing with a ring whose only key is pending: status %d, want an error: %s", resp.Status, resp.Body)
	}

	t.Run("force", func(t *testing.T) {
		before := time.Now().Unix()
		resp := env.root.mustWrite(t, m.p("keys/ops/rotate"), map[string]any{"force": true})
		after := readRing(t, m, "ops")
		if len(resp.Warnings) == 0 {
			t.Error("force=true: no warning")
		}
		if !boolean(t, resp.Data, "rotated") || str(t, resp.Data, "active_kid") != first.Kid {
			t.Errorf("force=true: response %s, want rotated=true active_kid=%s", resp.Body, first.Kid)
		}
		if at := integer(t, resp.Data, "activates_at"); at < before || at > time.Now().Unix() {
			t.Errorf("force=true: activates_at %d, want now (%d)", at, before)
		}
		next, ok := after.nextPending()
		if !ok {
			t.Fatalf("after force: no pending key: %+v", after.SigningKeys)
		}
		if pk, _ := resp.Data["pending_kid"].(string); pk != next.Kid {
			t.Errorf("force=true: pending_kid %v, want the next pending key %s: %s", resp.Data["pending_kid"], next.Kid, resp.Body)
		}
	})

	t.Run("expected_active_kid mismatch is a no-op", func(t *testing.T) {
		before := readRing(t, m, "ops")
		resp := env.root.write(t, m.p("keys/ops/rotate"), map[string]any{"expected_active_kid": "not-the-active-kid"})
		if resp.Status != http.StatusOK {
			t.Fatalf("status %d, want 200 with rotated=false: %s", resp.Status, resp.Body)
		}
		if boolean(t, resp.Data, "rotated") {
			t.Errorf("rotated=true although expected_active_kid did not match: %s", resp.Body)
		}
		after := readRing(t, m, "ops")
		if len(after.SigningKeys) != len(before.SigningKeys) {
			t.Fatalf("signing keys changed: %+v -> %+v", before.SigningKeys, after.SigningKeys)
		}
		for i := range before.SigningKeys {
			if before.SigningKeys[i] != after.SigningKeys[i] {
				t.Errorf("key changed: %+v -> %+v", before.SigningKeys[i], after.SigningKeys[i])
			}
		}
	})

	t.Run("plain rotate waits for the lead", func(t *testing.T) {
		before := readRing(t, m, "ops")
		active := before.inState("active")[0]
		next, _ := before.nextPending()
		resp := env.root.mustWrite(t, m.p("keys/ops/rotate"), map[string]any{"expected_active_kid": active.Kid})
		if !boolean(t, resp.Data, "rotated") {
			t.Fatalf("rotated=false: %s", resp.Body)
		}
		at := integer(t, resp.Data, "activates_at")
		if want := max(next.PublishAt+lead, time.Now().Unix()); at < want-1 || at > want+1 {
			t.Errorf("activates_at %d, want max(now, publish_at + publish_lead) = %d", at, want)
		}
		// The outgoing key signs until then; the promoted key is the next
		// to activate.
		if got := str(t, resp.Data, "active_kid"); got != active.Kid {
			t.Errorf("active_kid %s, want the key that still signs, %s", got, active.Kid)
		}
		if got, _ := resp.Data["pending_kid"].(string); got != next.Kid {
			t.Errorf("pending_kid %v, want the promoted key %s: %s", resp.Data["pending_kid"], next.Kid, resp.Body)
		}

		after := readRing(t, m, "ops")
		if k, _ := after.byKid(active.Kid); k.State != "active" || k.RetireAt != at {
			t.Errorf("outgoing key %s: %+v, want still active with retire_at %d", active.Kid, k, at)
		}
		if k, _ := after.byKid(next.Kid); k.State != "pending" || k.ActivateAt != at {
			t.Errorf("promoted key %s: %+v, want pending with activate_at %d", next.Kid, k, at)
		}
		s := sign(t, m, "ops", map[string]any{})
		if s.Kid != active.Kid {
			t.Errorf("signed with %s before the promoted key's lead ended; want %s", s.Kid, active.Kid)
		}
	})
}
