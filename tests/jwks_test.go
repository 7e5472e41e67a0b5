package tests

import (
	"crypto"
	"encoding/base64"
	"net/http"
	"slices"
	"testing"
)

// TestJWKSHTTP checks the JWKS endpoints the way a verifier and a cache see
// them: raw bodies, media type, caching headers, conditional requests and
// HEAD, per-ring sets, and nothing private in any key.
func TestJWKSHTTP(t *testing.T) {
	t.Parallel()
	const maxAge = 60
	m := newMount(t, "jwks", map[string]any{"jwks_max_age": maxAge})
	// Default rotation_period and publish_lead (24h): the lead bound holds.
	const publishLead = 86400
	createRing(t, m, "alpha", map[string]any{"algorithm": "ES256"})
	createRing(t, m, "beta", map[string]any{"algorithm": "EdDSA"})

	published := map[string][]string{}
	for _, name := range []string{"alpha", "beta"} {
		r := readRing(t, m, name)
		for _, k := range r.SigningKeys {
			switch k.State {
			case "pending", "active", "retiring":
				published[name] = append(published[name], k.Kid)
			}
		}
		if len(r.inState("pending")) == 0 {
			t.Errorf("ring %s has no pending key: the JWKS must hold the next key too", name)
		}
	}
	all := append(slices.Clone(published["alpha"]), published["beta"]...)

	full := fetchJWKS(t, m, "jwks")
	t.Run("body", func(t *testing.T) {
		sameKids(t, "jwks", full.kids(), all)
		checkPublicKeys(t, full)
	})

	t.Run("caching", func(t *testing.T) {
		checkJWKSCaching(t, "jwks", full.Resp, maxAge, publishLead)
		if full.Resp.Header.Get("ETag") == "" {
			t.Errorf("jwks: no ETag (is the mount tuned with allowed_response_headers=ETag?)")
		}
	})

	etag := full.Resp.Header.Get("ETag")
	t.Run("if-none-match", func(t *testing.T) {
		if etag == "" {
			t.Fatal("no ETag to send (the caching subtest says why)")
		}
		resp, body := env.root.raw(t, http.MethodGet, m.p("jwks"), http.Header{"If-None-Match": {etag}})
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match %s: status %d, want 304: %s", etag, resp.StatusCode, body)
		}
		if len(body) != 0 {
			t.Errorf("304 with a body of %d bytes", len(body))
		}
		if got := resp.Header.Get("ETag"); got != etag {
			t.Errorf("304 ETag %q, want %q", got, etag)
		}
		// A 304 refreshes the cached copy's freshness, so it carries the
		// same caching rules as a 200 (RFC 9110 section 15.4.5).
		checkJWKSCaching(t, "304", resp, maxAge, publishLead)
		// Go's HTTP server, and so Vault, drops Content-Type from every 304
		// (net/http suppresses it per RFC 7232 section 4.1), whatever the
		// plugin sets; if a future server passes it, it must be right.
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			requireMediaType(t, "304", resp, jwksMediaType)
		}

		resp, body = env.root.raw(t, http.MethodGet, m.p("jwks"), http.Header{"If-None-Match": {`"not-the-etag"`}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("If-None-Match with another ETag: status %d, want 200", resp.StatusCode)
		}
		sameKids(t, "jwks after a stale ETag", parseJWKS(t, "jwks", resp, body).kids(), all)
	})

	t.Run("head", func(t *testing.T) {
		resp, body := env.root.raw(t, http.MethodHead, m.p("jwks"), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("HEAD jwks: status %d, want 200", resp.StatusCode)
		}
		requireMediaType(t, "HEAD jwks", resp, jwksMediaType)
		if len(body) != 0 {
			t.Errorf("HEAD returned a body of %d bytes", len(body))
		}
		if got := resp.Header.Get("ETag"); got != etag {
			t.Errorf("HEAD ETag %q, GET ETag %q", got, etag)
		}
		checkJWKSCaching(t, "HEAD jwks", resp, maxAge, publishLead)
	})

	t.Run("per-ring", func(t *testing.T) {
		for _, name := range []string{"alpha", "beta"} {
			f := fetchJWKS(t, m, "jwks/"+name)
			sameKids(t, "jwks/"+name, f.kids(), published[name])
			checkPublicKeys(t, f)
			checkJWKSCaching(t, "jwks/"+name, f.Resp, maxAge, publishLead)
		}
	})

	t.Run("well-known", func(t *testing.T) {
		f := fetchJWKS(t, m, ".well-known/jwks.json")
		sameKids(t, ".well-known/jwks.json", f.kids(), all)
		checkPublicKeys(t, f)
		checkJWKSCaching(t, ".well-known/jwks.json", f.Resp, maxAge, publishLead)
		if got := f.Resp.Header.Get("ETag"); got != etag {
			t.Errorf(".well-known/jwks.json ETag %q, jwks ETag %q: same body, same hash", got, etag)
		}
	})

	t.Run("max-age follows config", func(t *testing.T) {
		env.root.mustWrite(t, m.p("config"), map[string]any{"jwks_max_age": 7})
		for range 5 {
			f := fetchJWKS(t, m, "jwks")
			checkJWKSCaching(t, "jwks after jwks_max_age=7", f.Resp, 7, publishLead)
		}
	})
}

// sameKids fails unless got and want hold the same kids, each once.
func sameKids(t *testing.T, what string, got, want []string) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: kids %v, want %v", what, g, w)
	}
}

// checkPublicKeys asserts that every JWK is a public signing key with its
// members set and its kid equal to the RFC 7638 thumbprint.
func checkPublicKeys(t *testing.T, f fetchedJWKS) {
	t.Helper()
	if len(f.Set.Keys) == 0 {
		t.Fatal("empty JWKS")
	}
	for i, k := range f.Set.Keys {
		raw := f.Members[i]
		for _, member := range []string{"kty", "kid", "alg", "use"} {
			if s, _ := raw[member].(string); s == "" {
				t.Errorf("key %d: member %q missing or empty: %v", i, member, raw)
			}
		}
		if raw["use"] != "sig" {
			t.Errorf("key %s: use %v, want sig", k.KeyID, raw["use"])
		}
		for _, member := range privateMembers {
			if _, ok := raw[member]; ok {
				t.Errorf("key %s: private member %q published", k.KeyID, member)
			}
		}
		if !k.IsPublic() {
			t.Errorf("key %s: go-jose reads it as a private key", k.KeyID)
		}
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Errorf("key %s: thumbprint: %v", k.KeyID, err)
		} else if want := base64.RawURLEncoding.EncodeToString(tp); k.KeyID != want {
			t.Errorf("kid %s is not the RFC 7638 SHA-256 thumbprint %s", k.KeyID, want)
		}
	}
}
