package tests

import (
	"testing"
	"time"
)

// TestAutomaticRotation runs a ring with a 10s rotation period on the real
// server: keys must rotate on schedule without any operator call, every key
// must stay verifiable until its remove_at, and a removed kid must leave the
// JWKS for good. Takes about a minute and a half.
func TestAutomaticRotation(t *testing.T) {
	t.Parallel()
	const (
		maxAge    = 5
		period    = 10
		lead      = 10
		verifyTTL = 70
		ttl       = 5
		maxTTL    = 10
		// Long enough for four scheduled rotations.
		observeFor = 40 * time.Second
		// The forced key retires after one period and leaves the JWKS
		// verification_ttl later; anything much later is a bug, and the
		// test must not wait for it.
		removalWaitCap = (period + verifyTTL + 20) * time.Second
		afterRemoval   = 5 * time.Second
	)
	m := newMount(t, "rotate", map[string]any{"jwks_max_age": maxAge})
	forced := createRing(t, m, "fast", map[string]any{
		"algorithm":        "ES256",
		"rotation_period":  period,
		"publish_lead":     lead,
		"verification_ttl": verifyTTL,
	})
	createRole(t, m, "fast", map[string]any{
		"key":       "fast",
		"audiences": []string{apiAudience},
		"ttl":       ttl,
		"max_ttl":   maxTTL,
	})

	w := newRotationWatch(t, m, "fast", "fast", "ES256", lead, maxAge)
	w.observeUntil(w.start.Add(observeFor))
	if w.kidOrder[0] != forced {
		t.Fatalf("first token signed by %s, the forced key is %s", w.kidOrder[0], forced)
	}
	if len(w.kidOrder) < 3 {
		t.Fatalf("after %s with rotation_period=%ds, %d kid(s) signed (%v): want the forced key and at least two automatic rotations",
			observeFor, period, len(w.kidOrder), w.kidOrder)
	}

	removeAt := w.keys[forced].RemoveAt
	if removeAt == 0 {
		t.Fatalf("forced key %s retired (%+v) but has no remove_at", forced, w.keys[forced])
	}
	wait := time.Until(time.Unix(removeAt, 0))
	if wait > removalWaitCap {
		t.Fatalf("forced key %s: remove_at is %s away (%+v); with verification_ttl=%ds it should be within %s",
			forced, wait.Round(time.Second), w.keys[forced], verifyTTL, removalWaitCap)
	}
	t.Logf("%d kids so far; waiting %s for kid %s to leave the JWKS", len(w.kidOrder), wait.Round(time.Second), forced)
	w.observeUntil(time.Unix(removeAt, 0).Add(afterRemoval))

	if w.present[forced] {
		t.Errorf("kid %s is still in the JWKS %s after its remove_at", forced, afterRemoval)
	}
	if _, ok := w.gone[forced]; !ok {
		t.Errorf("kid %s was never seen leaving the JWKS", forced)
	}
	if k, listed := w.lastRing.byKid(forced); listed && k.State != "removed" {
		t.Errorf("kid %s is %s after its remove_at, want removed", forced, k.State)
	}
	if err := w.verify(w.firstToken[forced], w.last); err == nil {
		t.Errorf("a token of the removed kid %s still verifies against the JWKS", forced)
	}

	elapsed := w.tokens[len(w.tokens)-1].At.Sub(w.firstToken[forced].At)
	if want := int(elapsed/(period*time.Second)) - 1; len(w.kidOrder) < want {
		t.Errorf("%d kids signed in %s with rotation_period=%ds, want at least %d", len(w.kidOrder), elapsed.Round(time.Second), period, want)
	}
	w.checkLifecycle(forced, ttl)
	t.Logf("kids in signing order: %v", w.kidOrder)
}
