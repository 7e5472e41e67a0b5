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
