package tests

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestPublishingAWSProfile guards what profile=aws promises, on a real S3
// store: one mount-wide publisher carries an RS256 ring and an ES256 ring
// together; the five verifier libraries, reading only the copies (go-oidc
// through the discovery document), verify tokens of both rings before and
// after a scheduled rotation of each; and a change that would give the
// publisher a key AWS does not take (a new EdDSA ring, a ring's algorithm
// changed to PS256) is refused with a 400 naming the ring, the algorithm,
// the publisher and the profile, while the copy goes on holding exactly
// what the plugin serves; a revoked key leaves the copy, and the
// libraries, within the bounds of docs/publishing.md. (The issuer is the store's loopback URL, whose
// port the profile lets through only on a loopback host.)
func TestPublishingAWSProfile(t *testing.T) {
	t.Parallel()
	const (
		maxAge = 5
		period = 20
		lead   = 15
		ttl    = 15
	)
	store, _ := s3Published(t)
	d := startDedicated(t, testserver.DevOptions{})
	m := d.mount(t, "jwt", map[string]any{"issuer": store.issuer(), "jwks_max_age": maxAge})
	m.issuer = store.issuer()
	rings := map[string]string{"rsa": "RS256", "ec": "ES256"}
	for _, ring := range []string{"rsa", "ec"} {
		d.root.mustWrite(t, m.p("keys/"+ring), map[string]any{
			"algorithm": rings[ring], "rotation_period": period, "publish_lead": lead, "verification_ttl": 80,
		})
		d.root.mustWrite(t, m.p("keys/"+ring+"/rotate"), map[string]any{"force": true})
		d.root.mustWrite(t, m.p("roles/"+ring), map[string]any{"key": ring, "audiences": []string{apiAudience}, "ttl": ttl, "max_ttl": ttl})
	}
	d.root.mustWrite(t, m.p("publishers/sts"), store.publisher(map[string]any{"profile": "aws"}))
	if got := d.root.mustRead(t, m.p("publishers/sts")).Data["profile"]; got != "aws" {
		t.Fatalf("profile reads back as %v", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	watch := watchCopy(t, store.jwksURL(), 100*time.Millisecond)
	served := func() []byte { return servedJWKS(d.server.Addr, m.path) }
	watch.awaitBody(t, time.Now(), served, 30*time.Second)
	verifiers := map[string]map[string]jwksVerifier{}
	for ring, alg := range rings {
		base := verifierConfig{issuer: m.issuer, audience: apiAudience, alg: alg, interval: maxAge * time.Second}
		verifiers[ring] = startVerifiers(t, ctx, base, func(verifierKind) string { return store.jwksURL() })
	}

	// Each ring's tokens verify with every library, reading the copy.
	// Tokens are tried for up to two max-ages plus the retry interval: a
	// library may hold the copy from before the key was in it.
	verifyAll := func(when string) map[string]string {
		kids := map[string]string{}
		for ring := range rings {
			tok, err := signBody(ctx, d.signer, m.p("sign/"+ring), map[string]any{})
			if err != nil {
				t.Fatalf("%s: sign/%s: %v", when, ring, err)
			}
			kids[ring] = tok.kid
			for name, v := range verifiers[ring] {
				deadline := time.Now().Add(2*maxAge*time.Second + 10*time.Second)
				for {
					kid, err := v.verify(ctx, tok.token)
					if err == nil && kid == tok.kid {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: %s rejects ring %s's token of kid %s, published at %s: %v", when, name, ring, tok.kid, store.jwksURL(), err)
					}
					time.Sleep(500 * time.Millisecond)
				}
			}
		}
		return kids
	}
	before := verifyAll("at the start")

	// Refusals name ring, algorithm, publisher and profile, and change
	// nothing: the copy still holds what is served.
	refused := []struct {
		path string
		body map[string]any
	}{
		{m.p("keys/ed"), map[string]any{"algorithm": "EdDSA", "rotation_period": period, "publish_lead": lead, "verification_ttl": 80}},
		{m.p("keys/ec"), map[string]any{"algorithm": "PS256"}},
	}
	for _, r := range refused {
		resp := d.root.write(t, r.path, r.body)
		alg := r.body["algorithm"].(string)
		if resp.Status != 400 || !resp.errorsMention(`publisher "sts"`) || !resp.errorsMention("profile=aws") || !resp.errorsMention(alg) {
			t.Fatalf("write %s algorithm=%s: status %d, errors %q; want a 400 naming publisher sts, profile=aws and %s", r.path, alg, resp.Status, resp.Errors, alg)
		}
	}
	if got := d.root.mustRead(t, m.p("keys/ec")).Data["algorithm"]; got != "ES256" {
		t.Fatalf("ring ec's algorithm is %v after a refused change", got)
	}

	// A scheduled rotation of each ring: the new keys reach the copy and
	// every library verifies their tokens.
	time.Sleep(time.Duration(period+2) * time.Second)
	watch.awaitBody(t, time.Now(), served, 30*time.Second)
	after := verifyAll("after a rotation")
	for ring := range rings {
		if after[ring] == before[ring] {
			t.Fatalf("ring %s still signs with %s after a period of %ds", ring, before[ring], period)
		}
	}
	kids := kidsOf(watch.lastBody())
	for _, kid := range []string{after["rsa"], after["ec"]} {
		if !slices.Contains(kids, kid) {
			t.Fatalf("the copy %v lacks the signing kid %s", kids, kid)
		}
	}

	// The revocation of ring ec's active key: its kid leaves the copy
	// within the bound docs/publishing.md gives, every library that
	// refreshes on its own rejects its token within the bound of its kind,
	// and the key promoted in its place verifies everywhere.
	revoked, err := signBody(ctx, d.signer, m.p("sign/ec"), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	watch.ban(revoked.kid, at)
	d.root.mustWrite(t, m.p("keys/ec/revoke"), map[string]any{"kid": revoked.kid})
	watch.awaitGone(t, revoked.kid, revokedGoneBound)
	for name, v := range verifiers["ec"] {
		k := kindNamed(name)
		if k.staleness(maxAge*time.Second) == 0 {
			continue
		}
		bound := rejectionBound(k, maxAge*time.Second)
		for {
			if _, err := v.verify(ctx, revoked.token); err != nil {
				break
			}
			if time.Since(at) > bound {
				t.Fatalf("%s still accepts a token of revoked kid %s %s after the revocation; the bound is %s", name, revoked.kid, time.Since(at).Round(100*time.Millisecond), bound)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	if promoted := verifyAll("after the revocation"); promoted["ec"] == revoked.kid {
		t.Fatalf("ring ec still signs with revoked kid %s", revoked.kid)
	}
	watch.verdict(t)
}
