package jwtrotor

import "testing"

// allowed_subjects globs have one '*', at the start or the end: a prefix or
// a suffix match, never a match in the middle.
func TestGlobMatch(t *testing.T) {
	t.Parallel()
	cases := []struct {
		glob, subject string
		match         bool
	}{
		{"svc-*", "svc-billing", true},
		{"svc-*", "svc-", true},
		{"svc-*", "xsvc-billing", false},
		{"*@example.com", "a@example.com", true},
		{"*@example.com", "a@example.com.evil", false},
		{"*", "anything", true},
		{"exact", "exact", true},
		{"exact", "exactly", false},
	}
	for _, c := range cases {
		if checkGlob(c.glob) != nil {
			t.Fatalf("%q refused", c.glob)
		}
		if got := globMatch(c.glob, c.subject); got != c.match {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.glob, c.subject, got, c.match)
		}
	}
	for _, g := range []string{"a*b", "**", "*a*", ""} {
		if checkGlob(g) == nil {
			t.Errorf("%q accepted", g)
		}
	}
}

// A caller claim that differs from a static one only in letter case is the
// static claim: verifiers may read either.
func TestStaticClaimNamedFoldsCase(t *testing.T) {
	t.Parallel()
	static := map[string]any{"scope": "read", "ſcope2": 1}
	for _, name := range []string{"scope", "Scope", "SCOPE", "ſcope"} {
		if got, ok := staticClaimNamed(static, name); !ok || got != "scope" {
			t.Errorf("%q: got %q %v", name, got, ok)
		}
	}
	if _, ok := staticClaimNamed(static, "scopes"); ok {
		t.Error("scopes matched scope")
	}
}

// Every value of a claim is checked, at any depth and after any valid
// sibling: text that is not UTF-8 inside an object or a list is refused.
func TestClaimValuesCheckedAtEveryDepth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	for name, v := range map[string]any{
		"in an object":               map[string]any{"y": "a\xffb"},
		"in an object after a valid": map[string]any{"a": map[string]any{"ok": "fine"}, "b": map[string]any{"bad": "a\xffb"}},
		"in a list":                  []any{"a\xffb"},
		"in a list after a valid":    []any{"fine", []any{"ok"}, "a\xffb"},
		"in a list in an object":     map[string]any{"y": []any{"a\xffb"}},
	} {
		r, err := e.write("roles/r", map[string]any{"key": "k", "audiences": "api", "claims": map[string]any{"x": v}})
		if err == nil && (r == nil || !r.IsError()) {
			t.Fatalf("invalid UTF-8 %s: the role was written", name)
		}
		expect400(t, r, err, "claims", "UTF-8")
	}
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "claims": map[string]any{"x": map[string]any{"a": []any{"fine", map[string]any{"b": 1.5}}}}})
}
