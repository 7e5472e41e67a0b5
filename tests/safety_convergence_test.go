package tests

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// TestSafetyConvergence runs real rotations on a real Vault while a signer
// issues tokens continuously over HTTP and every verifier library checks
// every token twice: as soon as it is issued, and again a few seconds before
// it expires (when its key may already be retiring). Each library polls the
// JWKS with its own cache, configured as an operator would for a 20s
// rotation (refresh interval = jwks_max_age = 10s, lead 20s). The verifiers
// start before the ring exists, so every key they use reaches them through
// their own refreshes. Through at least five rotations no valid token may
// fail anywhere. Takes about two and a half minutes.
func TestSafetyConvergence(t *testing.T) {
	t.Parallel()
	const (
		maxAge    = 10
		period    = 20
		lead      = 20
		verifyTTL = 120
		ttl       = 20
		maxTTL    = 30
		alg       = "RS256"

		wantRotations = 5
		signEvery     = 300 * time.Millisecond
		// Re-verify this long before exp.
		lateMargin = 8 * time.Second
	)
	m := newMount(t, "saf-conv", map[string]any{"jwks_max_age": maxAge, "verifiers": declaredNames()})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	// Every verifier holds the mount's empty key set from here on.
	vs := startVerifiers(t, ctx, verifierConfig{
		issuer: m.issuer, audience: apiAudience, alg: alg, interval: maxAge * time.Second,
	}, jwksURLFor(env.root.url(m.p("jwks"))))

	// No force: the first key signs after its lead, as in production.
	env.root.mustWrite(t, m.p("keys/conv"), map[string]any{
		"algorithm":        alg,
		"rotation_period":  period,
		"publish_lead":     lead,
		"verification_ttl": verifyTTL,
	})
	createRole(t, m, "conv", map[string]any{
		"key": "conv", "audiences": []string{apiAudience}, "ttl": ttl, "max_ttl": maxTTL,
	})
	first, ok := readRing(t, m, "conv").nextPending()
	if !ok {
		t.Fatal("new ring has no pending key")
	}
	firstAt := time.Unix(first.ActivateAt, 0)
	t.Logf("ring created; first key %s signs at %s (in %s)", first.Kid, firstAt.Format(time.TimeOnly), time.Until(firstAt).Round(time.Second))

	pipe := newPipeline(ctx, vs, lateMargin)

	// The signer: continuous tokens from the first activation on.
	// Vault's clock has one-second resolution: start a second late rather
	// than count a too-early call as a failure.
	time.Sleep(time.Until(firstAt.Add(time.Second)))
	var (
		tokens    []signedToken
		kidOrder  []string
		signFails []string
	)
	deadline := firstAt.Add(time.Duration(wantRotations+2)*period*time.Second + 10*time.Second)
	minEnd := firstAt.Add(time.Duration(wantRotations)*period*time.Second + 3*time.Second)
	for seq := 1; time.Now().Before(deadline); seq++ {
		tick := time.Now()
		s, err := signRole(ctx, env.signer, m, "conv")
		if err != nil {
			signFails = append(signFails, err.Error())
			if len(signFails) > 20 {
				break
			}
		} else {
			s.seq = seq
			tokens = append(tokens, s)
			kidOrder = noteSigningKid(t, kidOrder, s.kid)
			pipe.dispatch(s)
		}
		if len(kidOrder) > wantRotations && time.Now().After(minEnd) {
			break
		}
		time.Sleep(time.Until(tick.Add(signEvery)))
	}
	signedFor := time.Since(firstAt).Round(time.Second)
	t.Logf("signed %d tokens in %s; waiting for the late checks (up to %ds)", len(tokens), signedFor, ttl)
	pipe.finish()

	if len(tokens) == 0 {
		t.Fatalf("no token signed; sign errors: %v", signFails)
	}
	rotations := len(kidOrder) - 1
	if len(signFails) > 0 {
		t.Errorf("%d sign calls failed, first: %s", len(signFails), signFails[0])
	}
	if rotations < wantRotations {
		t.Errorf("%d rotations observed in %s (kids %v), want at least %d", rotations, signedFor, kidOrder, wantRotations)
	}
	if kidOrder[0] != first.Kid {
		t.Errorf("first token signed by %s, the ring's first key is %s", kidOrder[0], first.Kid)
	}

	report := env.root.mustRead(t, m.p("verifiers"))
	reported := map[string]int64{}
	if items, ok := report.Data["declared"].([]any); ok {
		for _, it := range items {
			if d, ok := it.(map[string]any); ok {
				if id, _ := d["verifier"].(string); id != "" {
					reported[id] += asInt(t, "fetches", d["fetches"])
				}
			}
		}
	}

	table := pipe.judge(t, func(name string) int64 { return reported[name] })
	for _, name := range kindNames() {
		fetches := vs[name].fetches()
		if fetches < 0 {
			fetches = reported[name]
		}
		// Every library fetched before the ring existed; verifying the
		// first key's tokens took at least one more fetch.
		if fetches < 2 {
			t.Errorf("%s fetched the JWKS %d times, want at least 2 (one before the ring existed, then refreshes)", name, fetches)
		}
		if k := kindNamed(name); k.declared && reported[name] < 2 {
			t.Errorf("the verifiers report counts %d fetches for %s, want at least 2: %s", reported[name], name, report.Body)
		}
	}
	t.Logf("convergence: %d tokens signed over %s, %d rotations (kids in order: %v)\n%s", len(tokens), signedFor, rotations, kidOrder, table)
}

// signedToken is one token the signer received.
type signedToken struct {
	seq   int
	token string
	kid   string
	iat   int64
	exp   int64
}

// signRole signs on a role through any client; errors are returned, not
// fatal, so it can run in loops and goroutines.
func signRole(ctx context.Context, c *vaultClient, m *mount, role string) (signedToken, error) {
	return signBody(ctx, c, m.p("sign/"+role), map[string]any{})
}

func signBody(ctx context.Context, c *vaultClient, path string, body map[string]any) (signedToken, error) {
	return mint(ctx, c, http.MethodPost, path, body)
}

// mint asks for one token with method (a write of sign/<role> or a read
// of token/<role>) and returns it with its kid, iat and exp from the answer.
func mint(ctx context.Context, c *vaultClient, method, path string, body map[string]any) (signedToken, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var sent any
	if body != nil {
		sent = body
	}
	resp, err := c.call(ctx, method, path, sent)
	if err != nil {
		return signedToken{}, err
	}
	if resp.Status != http.StatusOK {
		return signedToken{}, fmt.Errorf("%s %s: status %d: %s", method, path, resp.Status, resp.Body)
	}
	s := signedToken{}
	s.token, _ = resp.Data["token"].(string)
	s.kid, _ = resp.Data["kid"].(string)
	iat, err1 := jsonInt(resp.Data["issued_at"])
	exp, err2 := jsonInt(resp.Data["expires_at"])
	if s.token == "" || s.kid == "" || err1 != nil || err2 != nil {
		return signedToken{}, fmt.Errorf("%s %s: incomplete response: %s", method, path, resp.Body)
	}
	s.iat, s.exp = iat, exp
	return s, nil
}

func jsonInt(v any) (int64, error) {
	switch n := v.(type) {
	case interface{ Int64() (int64, error) }:
		return n.Int64()
	case float64:
		return int64(n), nil
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

// noteSigningKid appends kid to the order in which kids signed when it
// differs from the last, and fails the test when a kid signs again after
// another took over, unless it is one of mayReturn (a rollback's keys).
func noteSigningKid(t *testing.T, order []string, kid string, mayReturn ...string) []string {
	t.Helper()
	n := len(order)
	if n > 0 && order[n-1] == kid {
		return order
	}
	if slices.Contains(order, kid) && !slices.Contains(mayReturn, kid) {
		t.Errorf("kid %s signs again after %s took over", kid, order[n-1])
	}
	return append(order, kid)
}
