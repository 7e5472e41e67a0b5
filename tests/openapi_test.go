package tests

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// TestOpenAPIDocument fetches the OpenAPI document a real Vault generates
// for a mount of the plugin, validates it as OpenAPI 3 with kin-openapi, and
// checks that every path and operation of the plugin is in it, each with a
// unique operationId and a summary. (Vault's generator emits GET, POST,
// DELETE and PATCH operations only: the HEAD handlers of the JWKS and
// discovery paths cannot appear.)
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	m := newMount(t, "openapi", nil)
	// The document lists what the token may reach: the root token, all.
	resp, body := env.root.raw(t, http.MethodGet, "sys/internal/specs/openapi", http.Header{"X-Vault-Token": {rootToken}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(body)
	if err != nil {
		t.Fatalf("the document does not load as OpenAPI: %v", err)
	}
	prefix := "/" + m.path + "/"
	// Validate the plugin's part: its paths and the schemas of its
	// operations. (Vault's own built-ins carry defaults that kin-openapi
	// refuses, so the whole document does not validate.)
	mine := &openapi3.T{OpenAPI: doc.OpenAPI, Info: doc.Info, Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{Schemas: openapi3.Schemas{}}}
	for path, item := range doc.Paths.Map() {
		if strings.HasPrefix(path, prefix) {
			mine.Paths.Set(path, item)
		}
	}
	for name, ref := range doc.Components.Schemas {
		if strings.HasPrefix(name, "JwtRotor") {
			mine.Components.Schemas[name] = ref
		}
	}
	if len(mine.Components.Schemas) < 5 {
		t.Fatalf("only %d component schemas of the plugin (the check would prove little)", len(mine.Components.Schemas))
	}
	if err := mine.Validate(context.Background()); err != nil {
		t.Fatalf("the plugin's part of the document is not valid OpenAPI 3: %v", err)
	}
	want := map[string][]string{
		"config":                           {"get", "post"},
		"keys/":                            {"get"},
		"keys/{name}":                      {"get", "post", "delete"},
		"keys/{name}/rotate":               {"post"},
		"keys/{name}/revoke":               {"post"},
		"keys/{name}/rollback":             {"post"},
		"keys/{name}/import":               {"post"},
		"keys/{name}/trust":                {"post"},
		"wrapping_key":                     {"get"},
		"roles/":                           {"get"},
		"roles/{name}":                     {"get", "post", "delete"},
		"sign/{role}":                      {"post"},
		"verifiers":                        {"get"},
		"metrics":                          {"get"},
		"clock":                            {"get"},
		"clock/accept":                     {"post"},
		"jwks":                             {"get"},
		"jwks/{name}":                      {"get"},
		".well-known/jwks.json":            {"get"},
		".well-known/openid-configuration": {"get"},
	}
	ids := map[string]string{}
	var found []string
	for path, item := range doc.Paths.Map() {
		if !strings.HasPrefix(path, prefix) {
			continue
		}
		rel := strings.TrimPrefix(path, prefix)
		found = append(found, rel)
		for method, op := range item.Operations() {
			where := strings.ToUpper(method) + " " + rel
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s and %s share the operationId %q", where, other, op.OperationID)
			}
			ids[op.OperationID] = where
			if strings.TrimSpace(op.Summary) == "" {
				t.Errorf("%s: no summary", where)
			}
		}
	}
	sort.Strings(found)

	for rel, methods := range want {
		item := doc.Paths.Find(prefix + rel)
		if item == nil {
			t.Errorf("%s is missing from the document (it has %v)", rel, found)
			continue
		}
		for _, method := range methods {
			if item.GetOperation(strings.ToUpper(method)) == nil {
				t.Errorf("%s %s is missing from the document", strings.ToUpper(method), rel)
			}
		}
	}
	if len(ids) < 20 {
		t.Fatalf("only %d operations of the plugin in the document", len(ids))
	}
	var list []string
	for id, where := range ids {
		list = append(list, where+" "+id)
	}
	sort.Strings(list)
	t.Logf("%d paths and %d operations of the plugin in Vault's OpenAPI document, each with a unique operationId and a summary:\n%s", len(found), len(ids), strings.Join(list, "\n"))
}
