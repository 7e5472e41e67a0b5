package jwtrotor

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/logical"
)

// Fuzz targets for every parser of user input. `make test` runs each
// briefly from the seeds below; `make fuzz` runs them longer.

// FuzzClaimsJSON: decodeObject accepts exactly the JSON objects
// encoding/json accepts (one value, nothing after it, no member named twice),
// and what it accepts round-trips: encoding it and decoding again gives the
// same object.
func FuzzClaimsJSON(f *testing.F) {
	for _, s := range []string{`{"scope":"read"}`, `{"a":{"b":[1,2,{"c":null}]}}`, `{"a":1,"a":2}`, `{"A":1,"a":2}`, `[1]`, `{`, `{"x":1}{}`, "{\"\xff\":1}", `{"n":1e400}`, `{"":""}`,
		// Trailing data after a closing brace or bracket once slipped through.
		`{"x":1}}`, `{"x":1}]junk`, `{"x":1} x`, "{\"x\":1}\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := decodeObject(s)
		if err != nil {
			return
		}
		if !json.Valid([]byte(s)) {
			t.Fatalf("accepted %q, which is not valid JSON", s)
		}
		var ref map[string]any
		refDec := json.NewDecoder(strings.NewReader(s))
		refDec.UseNumber()
		if err := refDec.Decode(&ref); err != nil || ref == nil {
			t.Fatalf("accepted %q, which encoding/json does not read as an object: %v", s, err)
		}
		if len(ref) != len(m) {
			t.Fatalf("accepted %q with %d members, encoding/json reads %d (a member named twice?)", s, len(m), len(ref))
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatalf("decoded object does not re-encode: %v", err)
		}
		again, err := decodeObject(string(b))
		if err != nil {
			t.Fatalf("re-encoded %q is refused: %v", b, err)
		}
		if b2, _ := json.Marshal(again); string(b2) != string(b) {
			t.Fatalf("round trip changed the object: %s -> %s", b, b2)
		}
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
		if checkSubjectTemplate(s) != nil {
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
		list, err := stringList("audiences", s)
		if err != nil {
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
		if checkGlob(g) != nil {
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

// FuzzBatchItem sends one arbitrary JSON value as a batch item beside a good
// one: never a panic or a 5xx; the bad item's error names a field; the good
// item still gets a token; nothing is stored.
func FuzzBatchItem(f *testing.F) {
	for _, s := range []string{`{"ttl":null}`, `{"claims":null}`, `{"audience":null}`, `{"subject":null}`, `null`, `5`, `"x"`, `[]`,
		`{"ttl":1e400}`, `{"ttl":-1}`, `{"ttl":"1h"}`, `{"ttl":true}`, `{"claims":"{\"scope\":1}}"}`, `{"claims":{"scope":null}}`,
		`{"audience":[null]}`, `{"audience":[1]}`, `{"subject":{"a":1}}`, `{"TTL":1}`, `{"claims":{"scope":[[[[[[[1]]]]]]]}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var item any
		if err := dec.Decode(&item); err != nil {
			return
		}
		e := hostileSetup(t)
		before := dump(t, e.storage)
		var resp *logical.Response
		var err error
		noPanic(t, "batch item "+s, func() {
			resp, err = e.write("sign/r", map[string]any{"batch_input": []any{item, map[string]any{}}})
		})
		if err != nil || resp == nil || resp.IsError() {
			t.Fatalf("batch with item %s: err=%v resp=%s", s, err, respErr(resp))
		}
		results := resp.Data["batch_results"].([]map[string]any)
		if msg, ok := results[0]["error"].(string); ok {
			field := strings.SplitN(msg, ":", 2)[0]
			if _, known := signFields[field]; !known && !strings.HasPrefix(msg, "batch_input item") && !strings.Contains(msg, "unknown field") {
				t.Fatalf("item error %q names no field", msg)
			}
		} else if results[0]["token"] == nil {
			t.Fatalf("item %s got neither a token nor an error", s)
		}
		if results[1]["token"] == nil {
			t.Fatalf("the good item beside %s got no token: %v", s, results[1])
		}
		sameStorage(t, before, dump(t, e.storage))
	})
}

// FuzzRequest sends an arbitrary JSON object to every writable path through
// HandleRequest: never a panic or a 5xx, and a refusal changes no byte of
// storage.
func FuzzRequest(f *testing.F) {
	for i := range hostileWritablePaths {
		for _, s := range []string{`{}`, `{"x":null}`, `{"ttl":null,"claims":{}}`, `{"algorithm":"HS256"}`, `{"force":"yes"}`,
			`{"kid":null}`, `{"audiences":[[]]}`, `{"issuer":""}`, `{"claims":{"a":1e400}}`, `{"batch_input":[null,{"ttl":null}]}`} {
			f.Add(uint8(i), s)
		}
	}
	f.Fuzz(func(t *testing.T, which uint8, s string) {
		dec := json.NewDecoder(strings.NewReader(s))
		dec.UseNumber()
		var data map[string]any
		if err := dec.Decode(&data); err != nil || data == nil {
			return
		}
		path := hostileWritablePaths[int(which)%len(hostileWritablePaths)]
		e := hostileSetup(t)
		before := dump(t, e.storage)
		var resp *logical.Response
		var err error
		noPanic(t, path+" "+s, func() { resp, err = e.write(path, data) })
		switch {
		case err == nil && (resp == nil || !resp.IsError()):
		case err == logical.ErrInvalidRequest || (err == nil && resp.IsError()):
			sameStorage(t, before, dump(t, e.storage))
		default:
			t.Fatalf("%s %s: a 5xx: %v", path, s, err)
		}
	})
}
