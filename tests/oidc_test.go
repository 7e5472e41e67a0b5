package tests

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// TestGoOIDCDiscovery verifies a token the way an OIDC relying party does:
// discovery from the issuer URL alone, then the JWKS the discovery document
// names.
func TestGoOIDCDiscovery(t *testing.T) {
	t.Parallel()
	m := newMount(t, "oidc", nil)
	const clientID = "my-client"
	kid := createRing(t, m, "idp", map[string]any{"algorithm": "ES256"})
	createRole(t, m, "app", map[string]any{"key": "idp", "audiences": []string{clientID}})
	tok := sign(t, m, "app", map[string]any{})
	if tok.Kid != kid {
		t.Errorf("signed with kid %s, active kid is %s", tok.Kid, kid)
	}

	t.Run("discovery document", func(t *testing.T) {
		resp, body := env.root.raw(t, http.MethodGet, m.p(".well-known/openid-configuration"), nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("discovery: status %d: %s", resp.StatusCode, body)
		}
		requireMediaType(t, "discovery", resp, "application/json")
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("discovery body: %v: %s", err, body)
		}
		if _, ok := doc["data"]; ok {
			t.Errorf("discovery document wrapped in Vault's envelope: %s", body)
		}
		if doc["issuer"] != m.issuer {
			t.Errorf("issuer %v, want %s", doc["issuer"], m.issuer)
		}
		jwksURI, _ := doc["jwks_uri"].(string)
		if jwksURI == "" {
			t.Fatalf("no jwks_uri: %s", body)
		}
		jr, jbody := rawGet(t, http.MethodGet, jwksURI, nil)
		if jr.StatusCode != http.StatusOK {
			t.Fatalf("jwks_uri %s: status %d", jwksURI, jr.StatusCode)
		}
		if f := parseJWKS(t, jwksURI, jr, jbody); !f.has(kid) {
			t.Errorf("jwks_uri %s lacks the active kid %s", jwksURI, kid)
		}
		if algs := stringList(doc["id_token_signing_alg_values_supported"]); !slices.Contains(algs, "ES256") {
			t.Errorf("id_token_signing_alg_values_supported %v lacks ES256", algs)
		}
		for _, field := range []string{"response_types_supported", "subject_types_supported"} {
			if len(stringList(doc[field])) == 0 {
				t.Errorf("%s missing or empty: %s", field, body)
			}
		}
	})

	t.Run("go-oidc verifier", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ctx = oidc.ClientContext(ctx, &http.Client{Timeout: 10 * time.Second})
		provider, err := oidc.NewProvider(ctx, m.issuer)
		if err != nil {
			t.Fatalf("oidc.NewProvider(%s): %v", m.issuer, err)
		}

		idt, err := provider.Verifier(&oidc.Config{ClientID: clientID}).Verify(ctx, tok.Token)
		if err != nil {
			t.Fatalf("go-oidc Verify: %v", err)
		}
		if idt.Issuer != m.issuer || idt.Subject != env.entityID || !slices.Equal(idt.Audience, []string{clientID}) {
			t.Errorf("go-oidc token iss %q sub %q aud %v, want %s, %s, [%s]",
				idt.Issuer, idt.Subject, idt.Audience, m.issuer, env.entityID, clientID)
		}
		if got := idt.Expiry.Sub(idt.IssuedAt); got != 15*time.Minute {
			t.Errorf("exp - iat = %s, want the default ttl 15m", got)
		}

		// A relying party with another client id must refuse the token.
		if _, err := provider.Verifier(&oidc.Config{ClientID: "someone-else"}).Verify(ctx, tok.Token); err == nil {
			t.Error("a verifier for client someone-else accepted a token for my-client")
		}
	})
}
