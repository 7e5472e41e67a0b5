package tests

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestSecurityOversizedBodies sends oversized request bodies over HTTP.
// Above Vault's max_request_size (32 MiB by default) or its JSON limits (a
// string of more than 1 MiB, more than 10,000 array elements or object
// members, nesting deeper than 300) Vault refuses them before the plugin sees
// them; within those, the plugin's own limits answer 400 naming the field.
// Nothing changes either way.
func TestSecurityOversizedBodies(t *testing.T) {
	t.Parallel()
	m := newMount(t, "secbody", map[string]any{"jwks_max_age": 60})
	createRing(t, m, "demo", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	createRole(t, m, "demo", map[string]any{"key": "demo", "audiences": []string{"api"}, "allowed_claims": []string{"scope"}})
	before := env.root.mustRead(t, m.p("roles/demo"))

	post := func(path string, body []byte) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, env.root.url(m.p(path)), bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Vault-Token", rootToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return resp.StatusCode, string(msg)
	}
	claims := func(n int) []byte {
		return []byte(`{"claims":{"scope":"` + strings.Repeat("x", n) + `"}}`)
	}
	// 34 MB in 9,000 strings of 3,800 bytes: within Vault's JSON limits
	// (strings up to 1 MiB, arrays up to 10,000 elements), above its 32 MiB
	// max_request_size.
	var big bytes.Buffer
	big.WriteString(`{"claims":{"scope":[`)
	for i := 0; i < 9000; i++ {
		if i > 0 {
			big.WriteString(",")
		}
		big.WriteString(`"` + strings.Repeat("x", 3800) + `"`)
	}
	big.WriteString(`]}}`)

	for _, path := range []string{"roles/demo", "sign/demo"} {
		// Above max_request_size: 413 from Vault.
		if code, msg := post(path, big.Bytes()); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%d bytes to %s: status %d, want 413: %.200s", big.Len(), path, code, msg)
		}
		// One string above Vault's JSON string limit: Vault refuses it
		// (with a 500 on v1.21.0) before the plugin sees it.
		if code, msg := post(path, claims(1<<20+1)); code < 400 || !strings.Contains(msg, "exceeds allowed length") {
			t.Errorf("a string of 1 MiB + 1 byte to %s: status %d: %.200s", path, code, msg)
		}
		// Below Vault's limits: the plugin's own claims limit, a 400 naming
		// the field.
		if code, msg := post(path, claims(1<<20-64)); code != http.StatusBadRequest || !strings.Contains(msg, "claims: ") || !strings.Contains(msg, "bytes") {
			t.Errorf("1 MiB of claims to %s: status %d, want a 400 naming claims: %.200s", path, code, msg)
		}
	}
	if code, msg := post("roles/demo", []byte(`{"subject_template":"`+strings.Repeat("x", 1<<20-64)+`"}`)); code != http.StatusBadRequest || !strings.Contains(msg, "subject_template") {
		t.Errorf("a 1 MiB subject_template: status %d: %.200s", code, msg)
	}
	after := env.root.mustRead(t, m.p("roles/demo"))
	if !equalJSON(before.Data, after.Data) {
		t.Errorf("refused writes changed the role:\nbefore %v\nafter  %v", before.Data, after.Data)
	}
}
