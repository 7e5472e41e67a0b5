package tests

import (
	"strings"
	"testing"
)

// TestBatchSign signs a batch_input over HTTP: each item is checked like a
// single request, answered in order, and one bad item fails alone.
func TestBatchSign(t *testing.T) {
	t.Parallel()
	m := newMount(t, "batch", nil)
	kid := createRing(t, m, "es", map[string]any{"algorithm": "ES256"})
	createRole(t, m, "batch", map[string]any{
		"key": "es", "audiences": []string{apiAudience, "https://other.example.com"},
		"ttl": "5m", "max_ttl": "10m", "allowed_claims": []string{"scope"},
	})
	items := []any{
		map[string]any{"claims": map[string]any{"scope": "one"}},
		map[string]any{"claims": map[string]any{"iss": "https://evil.example"}}, // reserved
		map[string]any{"ttl": "1h"},                                             // above max_ttl
		map[string]any{"audience": "https://other.example.com", "ttl": 60},
		map[string]any{"audience": "https://evil.example"}, // not the role's
		map[string]any{"scope": "flat"},                    // unknown field
		map[string]any{"claims": `{"scope":"as text"}`},
	}
	resp := env.signer.mustWrite(t, m.p("sign/batch"), map[string]any{"batch_input": items})
	results, ok := resp.Data["batch_results"].([]any)
	if !ok || len(results) != len(items) {
		t.Fatalf("batch_results: %T with %d entries, want %d: %s", resp.Data["batch_results"], len(results), len(items), resp.Body)
	}
	set := fetchJWKS(t, m, "jwks").Set
	wantError := map[int]string{1: "iss", 2: "ttl", 4: "audience", 5: "scope"}
	wantScope := map[int]string{0: "one", 3: "", 6: "as text"}
	for i, r := range results {
		item := r.(map[string]any)
		if field, bad := wantError[i]; bad {
			msg, _ := item["error"].(string)
			if !strings.Contains(msg, field) || item["token"] != nil {
				t.Errorf("item %d: want an error naming %s and no token, got %v", i, field, item)
			}
			continue
		}
		token, _ := item["token"].(string)
		if item["kid"] != kid {
			t.Errorf("item %d: kid %v, want the active %s", i, item["kid"], kid)
		}
		_, claims, err := verifyWithJose(token, set, "ES256")
		if err != nil {
			t.Fatalf("item %d: token does not verify: %v", i, err)
		}
		if scope, _ := claims["scope"].(string); scope != wantScope[i] {
			t.Errorf("item %d: scope %q, want %q", i, scope, wantScope[i])
		}
		if i == 3 && claims["aud"] != "https://other.example.com" {
			t.Errorf("item 3: aud %v", claims["aud"])
		}
	}
	// More than 100 items is refused as a whole.
	big := make([]any, 101)
	for i := range big {
		big[i] = map[string]any{}
	}
	if r := env.signer.write(t, m.p("sign/batch"), map[string]any{"batch_input": big}); r.Status != 400 || !r.errorsMention("batch_input") {
		t.Fatalf("101 items: status %d: %s", r.Status, r.Body)
	}
}
