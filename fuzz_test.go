package jwtrotor

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// Fuzz targets for every parser of user input. `make test` runs each
// briefly from the seeds below; `make fuzz` runs them longer.

func FuzzClaimsJSON(f *testing.F) {
	for _, s := range []string{`{"scope":"read"}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`, `{"A":1,"a":2}`, `[1]`, `{`, `{"x":1}{}`, "{\"\xff\":1}", `{"n":1e400}`, `{"":""}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := decodeObject(s)
		if err != nil {
			return
		}
		if m == nil {
			t.Fatal("nil object without an error")
		}
		// Whatever decodes must re-encode, and names are never repeated.
		if _, err := json.Marshal(m); err != nil {
			t.Fatalf("decoded object does not re-encode: %v", err)
		}
		_ = checkClaimsObject("claims", m)
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"1h", "90s", "3600", "-1", "1.5s", "", "9999999999999h", "1h30m", " 5 ", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseDuration(s)
		if err != nil {
			return
		}
		if n < 0 || n > maxDuration {
			t.Fatalf("%q parsed to %d, outside 0..%d", s, n, maxDuration)
		}
	})
}

func FuzzSubjectTemplate(f *testing.F) {
	for _, s := range []string{"{{identity.entity.id}}", "svc/{{identity.entity.metadata.team}}", "{{identity.entity.aliases.auth_userpass_1.name}}", "static", "{{", "}}{{", "{{identity.groups.names}}", "{{ identity.entity.name }}x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkSubjectTemplate(s) != "" {
			return
		}
		if !utf8.ValidString(s) || len(s) > maxTemplateLen {
			t.Fatalf("accepted an invalid template %q", s)
		}
		// An accepted template renders for an entity or reports why.
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt"})
		e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA"})
		e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "a", "subject_template": s})
		resp, err := e.write("sign/r", nil)
		if err != nil && (resp == nil || !strings.HasPrefix(resp.Error().Error(), "subject")) {
			t.Fatalf("template %q: %v %v", s, err, respErr(resp))
		}
	})
}

func FuzzAudiences(f *testing.F) {
	for _, s := range []string{"a,b", "https://api.example.com", ",", " a , b ", "a\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list, msg := stringList("audiences", s)
		if msg != "" {
			return
		}
		for _, a := range list {
			if !utf8.ValidString(a) || strings.Contains(a, ",") {
				t.Fatalf("%q split into %q", s, a)
			}
		}
	})
}

func FuzzGlob(f *testing.F) {
	for _, g := range []string{"svc-*", "*@example.com", "*", "a*b", "**", "exact"} {
		f.Add(g, "svc-billing")
	}
	f.Fuzz(func(t *testing.T, g, s string) {
		if checkGlob(g) != "" {
			return
		}
		if strings.Count(g, "*") > 1 && g != "*" {
			t.Fatalf("accepted %q", g)
		}
		if g == s && !strings.Contains(g, "*") && !globMatch(g, s) {
			t.Fatalf("%q does not match itself", g)
		}
	})
}

func FuzzIfNoneMatch(f *testing.F) {
	for _, h := range []string{`"abc"`, `W/"abc"`, `"x", "abc"`, "*", "", `"abc`} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		got := etagMatches([]string{h}, `"abc"`)
		if got && !strings.Contains(h, `"abc"`) && !strings.Contains(h, "*") {
			t.Fatalf("%q matched", h)
		}
	})
}

// FuzzRevokeKid looks up arbitrary kids through the API: never a panic,
// never a change unless the kid is real.
func FuzzRevokeKid(f *testing.F) {
	for _, s := range []string{"", "nope", "../../private", "\x00", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, kid string) {
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt"})
		e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA"})
		before := dump(t, e.storage)
		resp, err := e.write("keys/k/revoke", map[string]any{"kid": kid})
		if err == nil && resp != nil && !resp.IsError() {
			t.Fatalf("revoked an unknown kid %q", kid)
		}
		sameStorage(t, before, dump(t, e.storage))
	})
}
