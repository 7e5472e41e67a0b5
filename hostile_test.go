package jwtrotor

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Hostile input. Every field of every writable path gets values of the wrong
// type, empty, negative, huge and malformed values, and the hostile values
// each field invites (algorithm downgrades, reserved and case-variant claims,
// template injection, oversized lists and strings). Each must be a 400 whose
// message starts with the field's name, with storage byte-for-byte unchanged
// and every read (config, ring, role, JWKS) unchanged too.

// hostileWritablePaths are request paths that reach every writable path
// pattern of the backend; TestHostileMatrixCoversEveryPath fails if the
// backend gains a writable path that is not among them.
var hostileWritablePaths = []string{
	"config",
	"keys/k",   // an existing ring (update)
	"keys/new", // a new ring (create)
	"keys/k/rotate",
	"keys/k/revoke",
	"keys/k/rollback",
	"keys/new/import", // an import creates a ring
	"keys/k/trust",
	"roles/r",   // an existing role (update)
	"roles/new", // a new role (create)
	"sign/r",
	"clock/accept",
	"publishers/p",   // an existing s3 publisher (update)
	"publishers/new", // a new publisher (create)
}

// hostileQueryPaths are the reads whose query parameters the plugin checks
// as it checks the fields of a write: token/<role>, which mints.
var hostileQueryPaths = []string{
	"token/r",
}

type hostileCase struct {
	name string
	op   logical.Operation // default: update
	path string
	data map[string]any
	// field is what the message must start with ("field: ..."), or the
	// unknown field an "unknown field" message must name.
	field string
	// also are further fragments the message must contain.
	also []string
	// setup runs after the standard set-up, before the snapshot.
	setup func(e *testEnv)
	// dataFrom, when set, builds data after setup.
	dataFrom func(e *testEnv) map[string]any
	// unsupported: the path is none the plugin serves, which Vault answers
	// with a 404 (and stores nothing).
	unsupported bool
}

type hostileValue struct {
	label string
	v     any
}

const (
	hostileKiB = 1 << 10
	hostileMiB = 1 << 20
)

// hostileWrongValues are values a field of type t must refuse whatever the
// path: wrong JSON types, malformed text, and for durations negative and
// huge values.
func hostileWrongValues(t framework.FieldType) []hostileValue {
	switch t {
	case framework.TypeString, framework.TypeLowerCaseString, framework.TypeNameString:
		return []hostileValue{
			{"number", 5}, {"boolean", true}, {"list", []any{"a"}}, {"object", map[string]any{}},
			{"invalid UTF-8", "a\xffb"},
		}
	case framework.TypeDurationSecond:
		return []hostileValue{
			{"number as word", "soon"}, {"empty", ""}, {"blank", "   "},
			{"negative string", "-1s"}, {"negative number", -1}, {"negative hours", "-2h"},
			{"huge string", "87601h"}, {"huge number", maxDurationSeconds + 1}, {"overflowing number", "9223372036854775808"},
			{"overflowing hours", "99999999999999999999h"},
			{"fraction of a second", 1.5}, {"milliseconds", "1500ms"}, {"exponent", "1e3"},
			{"boolean", true}, {"list", []any{"1h"}}, {"object", map[string]any{}}, {"invalid UTF-8", "1\xffh"},
		}
	case framework.TypeBool:
		return []hostileValue{
			{"word", "maybe"}, {"empty", ""}, {"number", 1}, {"list", []any{true}}, {"object", map[string]any{}},
		}
	case framework.TypeInt:
		return []hostileValue{
			{"word", "big"}, {"empty", ""}, {"fraction", 2048.5}, {"exponent", 1e20},
			{"overflow", "9223372036854775808"}, {"boolean", true}, {"list", []any{2048}}, {"object", map[string]any{}},
		}
	case framework.TypeFloat:
		return []hostileValue{
			{"word", "abc"}, {"empty", ""}, {"NaN", "NaN"}, {"infinity", "+Inf"},
			{"boolean", true}, {"list", []any{0.5}}, {"object", map[string]any{}},
		}
	case framework.TypeCommaStringSlice, framework.TypeStringSlice:
		return []hostileValue{
			{"number", 5}, {"boolean", true}, {"object", map[string]any{}},
			{"list of numbers", []any{1}}, {"mixed list", []any{"ok", true}}, {"list of objects", []any{map[string]any{}}},
			{"invalid UTF-8 entry", []any{"a\xffb"}}, {"invalid UTF-8 text", "a\xffb"},
		}
	case framework.TypeMap:
		return []hostileValue{
			{"number", 5}, {"boolean", true}, {"list", []any{map[string]any{}}},
			{"JSON list", "[1]"}, {"JSON null", "null"}, {"JSON string", `"x"`}, {"empty", ""},
			{"bad JSON", "{bad"}, {"trailing data", `{"a":1}{}`}, {"invalid UTF-8", "{\"a\":\"\xff\"}"},
			{"duplicate member", `{"scope":1,"scope":2}`}, {"nested duplicate member", `{"scope":{"x":1,"x":2}}`},
			{"nesting past the JSON decoder's limit", strings.Repeat(`{"a":`, 20000)},
		}
	case framework.TypeSlice:
		return []hostileValue{
			{"number", 5}, {"boolean", true}, {"object", map[string]any{}},
			{"not JSON", "not json"}, {"JSON object", `{"a":1}`}, {"invalid UTF-8", "[\"\xff\"]"}, {"empty", ""},
		}
	}
	return nil
}

// hostileTypeCases builds the wrong-value cases for every field of every
// writable path from the backend's own schema, so a field added later is
// covered without editing this file.
func hostileTypeCases(t *testing.T) []hostileCase {
	t.Helper()
	b := newBackend(systemClock{start: time.Now()})
	var out []hostileCase
	type target struct {
		path string
		op   logical.Operation
	}
	var targets []target
	for _, path := range hostileWritablePaths {
		targets = append(targets, target{path, logical.UpdateOperation})
	}
	for _, path := range hostileQueryPaths {
		targets = append(targets, target{path, logical.ReadOperation})
	}
	for _, tg := range targets {
		path, op := tg.path, tg.op
		p := b.Route(path)
		if p == nil {
			t.Fatalf("no route for %s", path)
		}
		names := make([]string, 0, len(p.Fields))
		for n, f := range p.Fields {
			// A read takes its query parameters only; the path's own
			// parameter is refused there as unknown (a hand-written case).
			if op == logical.ReadOperation && !f.Query {
				continue
			}
			names = append(names, n)
		}
		sort.Strings(names)
		for _, field := range names {
			values := hostileWrongValues(p.Fields[field].Type)
			if len(values) == 0 {
				t.Fatalf("%s field %s has type %v, which the matrix has no bad values for", path, field, p.Fields[field].Type)
			}
			for _, v := range values {
				out = append(out, hostileCase{
					name: path + " " + field + " " + v.label, path: path, op: op,
					data: map[string]any{field: v.v}, field: field,
				})
			}
			// A JSON null is never a value: it names the field and how to
			// keep it, and for the lists and objects of stored objects
			// (config, rings, roles) how to clear it.
			also := []string{"null", "leave the field out"}
			stored := path == "config" || strings.Count(path, "/") == 1 && !strings.HasPrefix(path, "sign/") && !strings.HasPrefix(path, "clock/") && op != logical.ReadOperation
			if ft := p.Fields[field].Type; stored && field != "audiences" &&
				(ft == framework.TypeMap || ft == framework.TypeCommaStringSlice || ft == framework.TypeStringSlice) {
				also = append(also, "to clear it", field+"=")
			}
			out = append(out, hostileCase{
				name: path + " " + field + " null", path: path, op: op,
				data: map[string]any{field: nil}, field: field, also: also,
			})
		}
		// An unknown field, and a field name that differs only in case.
		out = append(out,
			hostileCase{name: path + " unknown field", path: path, op: op, data: map[string]any{"exportable": true}, field: "exportable"},
		)
		if len(names) > 0 {
			upper := strings.ToUpper(names[len(names)-1])
			out = append(out, hostileCase{name: path + " field name in upper case", path: path, op: op, data: map[string]any{upper: "x"}, field: upper})
		}
	}
	return out
}

func hostileRepeat(n int, f func(i int) string) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func hostileDeepMap(n int) any {
	var v any = "leaf"
	for i := 0; i < n; i++ {
		v = map[string]any{"x": v}
	}
	return v
}

func hostileDeepList(n int) any {
	var v any = "leaf"
	for i := 0; i < n; i++ {
		v = []any{v}
	}
	return v
}

// hostileSemanticCases are the values each field invites an attacker or a
// careless operator to try.
func hostileSemanticCases() []hostileCase {
	big := strings.Repeat("a", hostileMiB)
	many := func(n int, prefix string) []any {
		return hostileRepeat(n, func(i int) string { return fmt.Sprintf("%s%d", prefix, i) })
	}
	cidrs := hostileRepeat(100000, func(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256) })
	var cs []hostileCase
	add := func(c ...hostileCase) { cs = append(cs, c...) }

	// config
	for _, iss := range []string{"vault", "ftp://vault.example.com/v1/jwt", "javascript:alert(1)", "https://", "//vault.example.com/v1/jwt",
		"https://vault.example.com/v1/jwt#frag", "https://user:pass@vault.example.com/v1/jwt", "https://vault.example.com/v1/jwt?x=1",
		"https://vault.example.com/v1/jwt/", "https://vault.example.com/v1/jwt\n", "https://vault.example.com/v1/\x00jwt", "http://[::1"} {
		add(hostileCase{name: "config issuer " + fmt.Sprintf("%q", iss), path: "config", data: map[string]any{"issuer": iss}, field: "issuer"})
	}
	add(
		hostileCase{name: "config issuer with a space", path: "config", data: map[string]any{"issuer": "https://vault.example.com/v1/my jwt"}, field: "issuer"},
		hostileCase{name: "config issuer of 1 MiB", path: "config", data: map[string]any{"issuer": "https://vault.example.com/" + big}, field: "issuer"},
		hostileCase{name: "config jwks_max_age zero", path: "config", data: map[string]any{"jwks_max_age": 0}, field: "jwks_max_age", also: []string{"1s to 24h"}},
		hostileCase{name: "config jwks_max_age above a day", path: "config", data: map[string]any{"jwks_max_age": "25h"}, field: "jwks_max_age", also: []string{"24h"}},
		hostileCase{name: "config jwks_max_age breaks a ring's lead", path: "config", data: map[string]any{"jwks_max_age": "6m"}, field: "jwks_max_age", also: []string{"k (publish_lead 600s)"}},
	)
	for _, id := range []string{"a b", "a&b", "a?b", "a#b", "a/b", "a\tb", "a\nb", strings.Repeat("v", 129), "a,,b"} {
		add(hostileCase{name: "config verifiers " + fmt.Sprintf("%.20q", id), path: "config", data: map[string]any{"verifiers": id}, field: "verifiers"})
	}
	add(hostileCase{name: "config verifiers 100000 ids", path: "config", data: map[string]any{"verifiers": many(100000, "v")}, field: "verifiers"})
	for _, c := range []string{"10.0.0.0/33", "10.0.0.1", "not-a-cidr", "::1/129", "10.0.0.0/8,,", "10.0.0.0/8,10.0.0.0"} {
		add(hostileCase{name: "config verifier_cidrs " + fmt.Sprintf("%q", c), path: "config", data: map[string]any{"verifier_cidrs": c}, field: "verifier_cidrs"})
	}
	add(hostileCase{name: "config verifier_cidrs 100000 ranges", path: "config", data: map[string]any{"verifier_cidrs": cidrs}, field: "verifier_cidrs"})

	// keys/<name>: algorithms, including every spelling of none and HMAC.
	for _, alg := range []string{"", "none", "None", "NONE", "nOnE", "HS256", "hs256", "Hs256", "HS384", "hs384", "HS512", "hS512",
		"rs256", "Rs256", "es256", "eddsa", "EDDSA", "Ed25519", "ES256K", "RSA", "RSA-OAEP", "A128KW", "dir",
		" RS256", "RS256 ", "RS256\x00", "RS256\n", "ＲＳ256", "RS256,ES256", big} {
		add(hostileCase{name: "keys new algorithm " + fmt.Sprintf("%.16q", alg), path: "keys/new", data: map[string]any{"algorithm": alg}, field: "algorithm"})
	}
	for _, alg := range []string{"none", "HS256", "hs512"} {
		add(hostileCase{name: "keys existing algorithm " + alg, path: "keys/k", data: map[string]any{"algorithm": alg}, field: "algorithm"})
	}
	for _, bits := range []any{512, 1024, 2047, 2049, 0, -2048, 8192, 16384, 1 << 40} {
		add(hostileCase{name: fmt.Sprintf("keys new RSA rsa_bits %v", bits), path: "keys/new", data: map[string]any{"algorithm": "RS256", "rsa_bits": bits}, field: "rsa_bits"})
	}
	add(
		hostileCase{name: "keys existing rsa_bits 1024 on an EC ring", path: "keys/k", data: map[string]any{"rsa_bits": 1024}, field: "rsa_bits"},
		hostileCase{name: "keys new rotation_period zero", path: "keys/new", data: map[string]any{"rotation_period": 0}, field: "rotation_period", also: []string{"10s"}},
		hostileCase{name: "keys new rotation_period 9s", path: "keys/new", data: map[string]any{"rotation_period": "9s"}, field: "rotation_period", also: []string{"10s"}},
		hostileCase{name: "keys new verification_ttl zero", path: "keys/new", data: map[string]any{"verification_ttl": 0}, field: "verification_ttl"},
		hostileCase{name: "keys new verification_ttl 60s", path: "keys/new", data: map[string]any{"verification_ttl": 60}, field: "verification_ttl", also: []string{"61s"}},
		hostileCase{name: "keys new publish_lead zero", path: "keys/new", data: map[string]any{"publish_lead": 0}, field: "publish_lead", also: []string{"2 x jwks_max_age"}},
		hostileCase{name: "keys new publish_lead below two max-ages", path: "keys/new", data: map[string]any{"publish_lead": "1m"}, field: "publish_lead"},
		hostileCase{name: "keys new too many periods published", path: "keys/new", data: map[string]any{"rotation_period": "1h", "publish_lead": "5h", "verification_ttl": "6h"}, field: "rotation_period", also: []string{"above 10"}},
		hostileCase{name: "keys new min_verifier_coverage negative", path: "keys/new", data: map[string]any{"min_verifier_coverage": -0.1}, field: "min_verifier_coverage"},
		hostileCase{name: "keys new min_verifier_coverage above one", path: "keys/new", data: map[string]any{"min_verifier_coverage": 1.01}, field: "min_verifier_coverage"},
		hostileCase{name: "keys new min_verifier_coverage huge", path: "keys/new", data: map[string]any{"min_verifier_coverage": 1e308}, field: "min_verifier_coverage"},
		hostileCase{name: "keys new gate without a delay", path: "keys/new", data: map[string]any{"min_verifier_coverage": 0.5}, field: "max_activation_delay"},
		hostileCase{name: "keys new max_activation_delay above the period", path: "keys/new", data: map[string]any{"rotation_period": "1h", "max_activation_delay": "2h"}, field: "max_activation_delay"},
		hostileCase{name: "keys existing verification_ttl below a role's max_ttl", path: "keys/k", data: map[string]any{"verification_ttl": "30m"}, field: "verification_ttl", also: []string{`role "r"`}},
		hostileCase{name: "keys existing force on a write", path: "keys/k", data: map[string]any{"force": true}, field: "force", also: []string{"delete"}},
		hostileCase{name: "keys deleted name reused", path: "keys/d", data: map[string]any{"algorithm": "ES256"}, field: "name", also: []string{"force=true"},
			setup: func(e *testEnv) {
				e.mustWrite("keys/d", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
				e.mustWrite("keys/d/rotate", map[string]any{"force": true})
				if _, err := e.do(logical.DeleteOperation, "keys/d", nil); err != nil {
					e.t.Fatal(err)
				}
			}},
		// Deletes take their fields from the query string.
		hostileCase{name: "keys delete force not a boolean", op: logical.DeleteOperation, path: "keys/d", data: map[string]any{"force": "maybe"}, field: "force",
			setup: hostileRingD},
		hostileCase{name: "keys delete with a misspelt force", op: logical.DeleteOperation, path: "keys/d", data: map[string]any{"forse": true}, field: "forse",
			setup: hostileRingD},
		hostileCase{name: "keys delete of a ring a role uses", op: logical.DeleteOperation, path: "keys/k", field: "name", also: []string{"role(s) r"}},
	)

	// keys/<name>/rotate, revoke, rollback
	add(
		hostileCase{name: "unknown ring operation", path: "keys/k/explode", unsupported: true},
		hostileCase{name: "rotate missing ring", path: "keys/nope/rotate", field: "name", also: []string{"nope"}},
		hostileCase{name: "rotate with a revoke field", path: "keys/k/rotate", data: map[string]any{"kid": "x"}, field: "kid", also: []string{"unknown field"}},
		hostileCase{name: "revoke with a rotate field", path: "keys/k/revoke", data: map[string]any{"force": true}, field: "force", also: []string{"unknown field"}},
		hostileCase{name: "revoke with an expected_active_kid", path: "keys/k/revoke", data: map[string]any{"expected_active_kid": "x"}, field: "expected_active_kid"},
		hostileCase{name: "revoke with revoke_active", path: "keys/k/revoke", data: map[string]any{"revoke_active": true}, field: "revoke_active", also: []string{"unknown field"}},
		hostileCase{name: "rollback with revoke_active", path: "keys/k/rollback", data: map[string]any{"revoke_active": true}, field: "revoke_active", also: []string{"unknown field"}},
		hostileCase{name: "rollback with force", path: "keys/k/rollback", data: map[string]any{"force": true}, field: "force"},
		hostileCase{name: "rollback with a kid", path: "keys/k/rollback", data: map[string]any{"kid": "x"}, field: "kid"},
		hostileCase{name: "rotate expected_active_kid of 1 MiB", path: "keys/k/rotate", data: map[string]any{"expected_active_kid": big}, field: "expected_active_kid"},
	)
	for _, kid := range []string{"", "nope", "../../private/k/x", "\x00", "*", strings.Repeat("A", 43), big} {
		add(hostileCase{name: fmt.Sprintf("revoke kid %.16q", kid), path: "keys/k/revoke", data: map[string]any{"kid": kid}, field: "kid"})
	}
	add(hostileCase{name: "revoke a kid of another ring", path: "keys/k/revoke", field: "kid",
		setup: func(e *testEnv) {
			e.mustWrite("keys/o", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
		},
		dataFrom: func(e *testEnv) map[string]any { return map[string]any{"kid": e.ring("o").Keys[0].KID} }})

	// The other ring operations on a ring that does not exist, and forced
	// rotations past the ring's key limit.
	add(
		hostileCase{name: "revoke missing ring", path: "keys/nope/revoke", data: map[string]any{"kid": "x"}, field: "name", also: []string{"nope"}},
		hostileCase{name: "rollback missing ring", path: "keys/nope/rollback", field: "name", also: []string{"nope"}},
		hostileCase{name: "forced rotation past the key limit", path: "keys/k/rotate", data: map[string]any{"force": true}, field: "force", also: []string{fmt.Sprintf("limit of %d", maxRingKeys)},
			setup: func(e *testEnv) {
				// Each forced rotation keeps one more key published for the
				// overlap: rotate until the next one would pass the limit.
				for range maxRingKeys {
					resp, err := e.do(logical.UpdateOperation, "keys/k/rotate", map[string]any{"force": true})
					if err == logical.ErrInvalidRequest || resp != nil && resp.IsError() {
						return
					}
				}
				e.t.Fatalf("%d forced rotations all accepted", maxRingKeys)
			}},
	)

	// keys/<name>/import: the ring's settings are checked as on keys/<name>,
	// then the key; the wrapping key is made before the snapshot.
	wrapped := func(kind string, extra map[string]any) func(e *testEnv) map[string]any {
		return func(e *testEnv) map[string]any { return e.importData(newTestKey(e.t, kind), extra) }
	}
	makeWrapping := func(e *testEnv) { e.wrappingPub() }
	add(
		hostileCase{name: "import into an existing ring", path: "keys/k/import", field: "name", also: []string{"exists"},
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256"})},
		hostileCase{name: "import without algorithm", path: "keys/imp/import", field: "algorithm", also: []string{"required"},
			setup: makeWrapping, dataFrom: wrapped("P-256", nil)},
		hostileCase{name: "import an EC key as RS256", path: "keys/imp/import", field: "algorithm",
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "RS256"})},
		hostileCase{name: "import a plain key", path: "keys/imp/import", field: "ciphertext",
			setup: makeWrapping, dataFrom: func(e *testEnv) map[string]any {
				return map[string]any{"algorithm": "ES256", "ciphertext": base64.StdEncoding.EncodeToString(mustPKCS8(e.t, newTestKey(e.t, "P-256")))}
			}},
		hostileCase{name: "import under a kid with a space", path: "keys/imp/import", field: "kid",
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256", "kid": "legacy 2024"})},
		hostileCase{name: "import under a kid the mount has", path: "keys/imp/import", field: "kid", also: []string{"unique"},
			setup: makeWrapping, dataFrom: func(e *testEnv) map[string]any {
				return e.importData(newTestKey(e.t, "P-256"), map[string]any{"algorithm": "ES256", "kid": e.ring("k").Keys[0].KID})
			}},
		hostileCase{name: "import rsa_bits 1024", path: "keys/imp/import", field: "rsa_bits",
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "RS256", "rsa_bits": 1024})},
		hostileCase{name: "import rotation_period 9s", path: "keys/imp/import", field: "rotation_period", also: []string{"10s"},
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256", "rotation_period": "9s"})},
		hostileCase{name: "import verification_ttl 60s", path: "keys/imp/import", field: "verification_ttl", also: []string{"61s"},
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256", "verification_ttl": 60})},
		hostileCase{name: "import publish_lead below two max-ages", path: "keys/imp/import", field: "publish_lead",
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256", "publish_lead": "1m"})},
		hostileCase{name: "import min_verifier_coverage above one", path: "keys/imp/import", field: "min_verifier_coverage",
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256", "min_verifier_coverage": 1.01})},
		hostileCase{name: "import max_activation_delay above the period", path: "keys/imp/import", field: "max_activation_delay",
			setup: makeWrapping, dataFrom: wrapped("P-256", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "max_activation_delay": "2h"})},
	)

	// keys/<name>/trust: an old public key, as jwk or pem, for a bounded time.
	trusted := func(extra map[string]any, jwkExtra map[string]any) func(e *testEnv) map[string]any {
		return func(e *testEnv) map[string]any {
			data := map[string]any{
				"jwk":        publicJWKMap(e.t, newTestKey(e.t, "P-256").Public(), "old-1", "ES256", jwkExtra),
				"expires_at": e.clock.Now().Add(24 * time.Hour).Unix(),
			}
			for k, v := range extra {
				data[k] = v
			}
			return data
		}
	}
	add(
		hostileCase{name: "trust on a missing ring", path: "keys/nope/trust", field: "name", also: []string{"nope"}, dataFrom: trusted(nil, nil)},
		hostileCase{name: "trust a jwk with a private member", path: "keys/k/trust", field: "jwk", dataFrom: trusted(nil, map[string]any{"d": "AAAA"})},
		hostileCase{name: "trust a pem that is not PEM", path: "keys/k/trust", field: "pem",
			data: map[string]any{"pem": "not a key", "kid": "old-1", "alg": "ES256", "expires_at": testStart.Add(24 * time.Hour).Unix()}},
		hostileCase{name: "trust a kid other than the jwk's", path: "keys/k/trust", field: "kid", also: []string{"differs"}, dataFrom: trusted(map[string]any{"kid": "old-2"}, nil)},
		hostileCase{name: "trust an EC key as RS256", path: "keys/k/trust", field: "alg", dataFrom: func(e *testEnv) map[string]any {
			return map[string]any{"jwk": publicJWKMap(e.t, newTestKey(e.t, "P-256").Public(), "old-1", "", nil), "alg": "RS256", "expires_at": e.clock.Now().Add(24 * time.Hour).Unix()}
		}},
		hostileCase{name: "trust until a past time", path: "keys/k/trust", field: "expires_at", also: []string{"not in the future"}, dataFrom: trusted(map[string]any{"expires_at": testStart.Unix() - 1}, nil)},
		hostileCase{name: "trust beyond the longest period", path: "keys/k/trust", field: "expires_at", also: []string{"is more than 90 days away", "for at most 90 days (until " + fmtTime(testStart.Unix()+maxTrustPeriodSeconds) + ")"}, dataFrom: trusted(map[string]any{"expires_at": testStart.Unix() + maxTrustPeriodSeconds + 1}, nil)},
	)

	// roles/<name>
	add(
		hostileCase{name: "roles new without key", path: "roles/new", data: map[string]any{"audiences": "api"}, field: "key", also: []string{"required"}},
		hostileCase{name: "roles new key empty", path: "roles/new", data: map[string]any{"key": "", "audiences": "api"}, field: "key"},
		hostileCase{name: "roles new key missing ring", path: "roles/new", data: map[string]any{"key": "nope", "audiences": "api"}, field: "key", also: []string{"nope"}},
		hostileCase{name: "roles new key in another case", path: "roles/new", data: map[string]any{"key": "K", "audiences": "api"}, field: "key"},
		hostileCase{name: "roles new key of a deleted ring", path: "roles/new", data: map[string]any{"key": "d", "audiences": "api"}, field: "key", setup: func(e *testEnv) {
			hostileRingD(e)
			if _, err := e.do(logical.DeleteOperation, "keys/d", nil); err != nil {
				e.t.Fatal(err)
			}
		}},
		hostileCase{name: "roles new key of 1 MiB", path: "roles/new", data: map[string]any{"key": big, "audiences": "api"}, field: "key"},
		hostileCase{name: "roles new without audiences", path: "roles/new", data: map[string]any{"key": "k"}, field: "audiences", also: []string{"required"}},
		hostileCase{name: "roles new audiences empty", path: "roles/new", data: map[string]any{"key": "k", "audiences": ""}, field: "audiences"},
		hostileCase{name: "roles new audiences empty list", path: "roles/new", data: map[string]any{"key": "k", "audiences": []any{}}, field: "audiences"},
		hostileCase{name: "roles existing audiences with an empty entry", path: "roles/r", data: map[string]any{"audiences": "a,,b"}, field: "audiences"},
		hostileCase{name: "roles existing audiences 100000 entries", path: "roles/r", data: map[string]any{"audiences": many(100000, "https://api.example.com/")}, field: "audiences"},
		hostileCase{name: "roles existing audience of 1 MiB", path: "roles/r", data: map[string]any{"audiences": []any{big}}, field: "audiences"},
		hostileCase{name: "roles existing ttl zero", path: "roles/r", data: map[string]any{"ttl": 0}, field: "ttl"},
		hostileCase{name: "roles existing max_ttl zero", path: "roles/r", data: map[string]any{"max_ttl": 0}, field: "max_ttl"},
		hostileCase{name: "roles existing ttl above max_ttl", path: "roles/r", data: map[string]any{"ttl": "2h", "max_ttl": "1h"}, field: "ttl", also: []string{"max_ttl"}},
		hostileCase{name: "roles existing max_ttl beyond the ring's overlap", path: "roles/r", data: map[string]any{"max_ttl": "2h"}, field: "max_ttl", also: []string{"verification_ttl"}},
		hostileCase{name: "roles existing token_type of 1 MiB", path: "roles/r", data: map[string]any{"token_type": big}, field: "token_type"},
	)
	// subject_template: template injection.
	for i, tpl := range []string{"", "{{", "}}", "x}}", "{{identity.entity.id}}{{", "{{identity.entity.id}}}}", "{{{{identity.entity.id}}}}",
		"{{identity.entity.secret}}", "{{identity.groups.names}}", "{{identity.groups.ids}}", "{{identity.entity.metadata}}",
		"{{identity.entity.aliases.x.metadata}}", "{{identity.entity.metadata.a b}}", "{{identity.entity.metadata.a.b}}",
		"{{ .Token }}", `{{printf "%s" .}}`, "{{identity.entity.id | base64}}", "{{token}}", "{{vault.token}}",
		"{{identity.entity.name}}\xff", strings.Repeat("x", maxTemplateLen+1), "{{" + big + "}}"} {
		add(hostileCase{name: fmt.Sprintf("roles subject_template %d %.24q", i, tpl), path: "roles/r", data: map[string]any{"subject_template": tpl}, field: "subject_template"})
	}
	for _, g := range []string{"a*b", "**", "*a*", "a,,b", "*svc*"} {
		add(hostileCase{name: fmt.Sprintf("roles allowed_subjects %q", g), path: "roles/r", data: map[string]any{"allowed_subjects": g}, field: "allowed_subjects"})
	}
	add(hostileCase{name: "roles allowed_subjects 100000 globs", path: "roles/r", data: map[string]any{"allowed_subjects": many(100000, "svc-")}, field: "allowed_subjects"})
	// Static claims.
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "ISS", "Sub", "aUd", "EXP", "Nbf", "IaT", "JTI", "iſs", "ſub"} {
		add(hostileCase{name: "roles reserved static claim " + name, path: "roles/r", data: map[string]any{"claims": map[string]any{name: "x"}}, field: "claims", also: []string{"reserved"}})
	}
	add(
		hostileCase{name: "roles claims 65 claims", path: "roles/r", data: map[string]any{"claims": hostileManyClaims(65)}, field: "claims", also: []string{"64"}},
		hostileCase{name: "roles claims nested six objects deep", path: "roles/r", data: map[string]any{"claims": map[string]any{"x": hostileDeepMap(6)}}, field: "claims", also: []string{"deeper"}},
		hostileCase{name: "roles claims nested six lists deep", path: "roles/r", data: map[string]any{"claims": map[string]any{"x": hostileDeepList(6)}}, field: "claims", also: []string{"deeper"}},
		hostileCase{name: "roles claims over 8 KiB", path: "roles/r", data: map[string]any{"claims": map[string]any{"x": strings.Repeat("x", 8*hostileKiB)}}, field: "claims", also: []string{"bytes"}},
		hostileCase{name: "roles claims of 1 MiB as text", path: "roles/r", data: map[string]any{"claims": `{"x":"` + big + `"}`}, field: "claims", also: []string{"bytes"}},
		hostileCase{name: "roles claims case variants", path: "roles/r", data: map[string]any{"claims": map[string]any{"Tenant": 1, "tenant": 2}}, field: "claims", also: []string{"case"}},
		hostileCase{name: "roles claims Kelvin-sign variant", path: "roles/r", data: map[string]any{"claims": map[string]any{"kid": 1, "\u212aid": 2}}, field: "claims", also: []string{"case"}},
		hostileCase{name: "roles claims long-s variant", path: "roles/r", data: map[string]any{"allowed_claims": "", "claims": map[string]any{"scope": 1, "ſcope": 2}}, field: "claims"},
		hostileCase{name: "roles claims empty name", path: "roles/r", data: map[string]any{"claims": map[string]any{"": 1}}, field: "claims"},
		hostileCase{name: "roles claims name of 257 bytes", path: "roles/r", data: map[string]any{"claims": map[string]any{strings.Repeat("n", maxClaimNameLen+1): 1}}, field: "claims"},
		hostileCase{name: "roles claims invalid UTF-8 name", path: "roles/r", data: map[string]any{"claims": map[string]any{"a\xffb": 1}}, field: "claims"},
		hostileCase{name: "roles claims invalid UTF-8 value", path: "roles/r", data: map[string]any{"claims": map[string]any{"x": "a\xffb"}}, field: "claims"},
	)
	// allowed_claims
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "Exp", "JTI", "iſs"} {
		add(hostileCase{name: "roles reserved allowed claim " + name, path: "roles/r", data: map[string]any{"allowed_claims": name}, field: "allowed_claims", also: []string{"reserved"}})
	}
	add(
		hostileCase{name: "roles allowed claim equal to a static one", path: "roles/r", data: map[string]any{"allowed_claims": "tier"}, field: "allowed_claims", also: []string{"static"}},
		hostileCase{name: "roles allowed claim a case variant of a static one", path: "roles/r", data: map[string]any{"allowed_claims": "TIER"}, field: "allowed_claims", also: []string{"static"}},
		hostileCase{name: "roles allowed claim empty entry", path: "roles/r", data: map[string]any{"allowed_claims": "a,,b"}, field: "allowed_claims"},
		hostileCase{name: "roles allowed claim of 257 bytes", path: "roles/r", data: map[string]any{"allowed_claims": strings.Repeat("n", maxClaimNameLen+1)}, field: "allowed_claims"},
		hostileCase{name: "roles allowed_claims 100000 names", path: "roles/r", data: map[string]any{"allowed_claims": many(100000, "c")}, field: "allowed_claims"},
	)
	for _, typ := range []string{"", "jwt", "JWT ", "at+JWT", "none", "JWS", `JWT","alg":"none`, "application/jwt"} {
		add(hostileCase{name: fmt.Sprintf("roles token_type %q", typ), path: "roles/r", data: map[string]any{"token_type": typ}, field: "token_type"})
	}

	// sign/<role>
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "ISS", "Sub", "AUD", "Exp", "nBf", "IAT", "Jti", "iſs", "ſub"} {
		add(hostileCase{name: "sign reserved claim " + name, path: "sign/r", data: map[string]any{"claims": map[string]any{name: 1}}, field: "claims", also: []string{"reserved"}})
	}
	for _, name := range []string{"tier", "Tier", "TIER"} {
		add(hostileCase{name: "sign overrides static claim as " + name, path: "sign/r", data: map[string]any{"claims": map[string]any{name: "platinum"}}, field: "claims", also: []string{"static"}})
	}
	add(
		hostileCase{name: "sign claim not allowed", path: "sign/r", data: map[string]any{"claims": map[string]any{"admin": true}}, field: "claims", also: []string{"allowed_claims"}},
		hostileCase{name: "sign claim allowed only in another case", path: "sign/r", data: map[string]any{"claims": map[string]any{"Scope": "x"}}, field: "claims", also: []string{"allowed_claims"}},
		hostileCase{name: "sign 65 claims", path: "sign/r", data: map[string]any{"claims": hostileManyClaims(65)}, field: "claims", also: []string{"64"}},
		hostileCase{name: "sign claims nested six objects deep", path: "sign/r", data: map[string]any{"claims": map[string]any{"scope": hostileDeepMap(6)}}, field: "claims", also: []string{"deeper"}},
		hostileCase{name: "sign claims nested six lists deep", path: "sign/r", data: map[string]any{"claims": map[string]any{"scope": hostileDeepList(6)}}, field: "claims", also: []string{"deeper"}},
		hostileCase{name: "sign claims nested deep as text", path: "sign/r", data: map[string]any{"claims": `{"scope":` + strings.Repeat("[", 6) + "1" + strings.Repeat("]", 6) + `}`}, field: "claims", also: []string{"deeper"}},
		hostileCase{name: "sign claims over 8 KiB", path: "sign/r", data: map[string]any{"claims": map[string]any{"scope": strings.Repeat("x", 8*hostileKiB)}}, field: "claims", also: []string{"bytes"}},
		hostileCase{name: "sign claims of 1 MiB as text", path: "sign/r", data: map[string]any{"claims": `{"scope":"` + big + `"}`}, field: "claims", also: []string{"bytes"}},
		hostileCase{name: "sign claims duplicate names as text", path: "sign/r", data: map[string]any{"claims": `{"scope":"a","scope":"b"}`}, field: "claims", also: []string{"twice"}},
		hostileCase{name: "sign claims duplicate nested names as text", path: "sign/r", data: map[string]any{"claims": `{"scope":{"a":1,"a":2}}`}, field: "claims", also: []string{"twice"}},
		hostileCase{name: "sign claims case variants", path: "sign/r", data: map[string]any{"claims": map[string]any{"scope": "a", "Scope": "b"}}, field: "claims", also: []string{"case"}},
		hostileCase{name: "sign claims case variants as text", path: "sign/r", data: map[string]any{"claims": `{"scope":"a","SCOPE":"b"}`}, field: "claims", also: []string{"case"}},
		hostileCase{name: "sign claims long-s variants", path: "sign/r", data: map[string]any{"claims": map[string]any{"scope": "a", "ſcope": "b"}}, field: "claims",
			setup: func(e *testEnv) { e.mustWrite("roles/r", map[string]any{"allowed_claims": []any{"scope", "ſcope"}}) }},
		hostileCase{name: "sign claims empty name", path: "sign/r", data: map[string]any{"claims": map[string]any{"": 1}}, field: "claims"},
		hostileCase{name: "sign claims invalid UTF-8 name", path: "sign/r", data: map[string]any{"claims": map[string]any{"sc\xffope": 1}}, field: "claims"},
		hostileCase{name: "sign claims invalid UTF-8 value", path: "sign/r", data: map[string]any{"claims": map[string]any{"scope": "a\xffb"}}, field: "claims"},
		hostileCase{name: "sign audience outside the role", path: "sign/r", data: map[string]any{"audience": "https://evil.example"}, field: "audience", also: []string{"evil"}},
		hostileCase{name: "sign audience in another case", path: "sign/r", data: map[string]any{"audience": "API"}, field: "audience"},
		hostileCase{name: "sign audience with an inner space", path: "sign/r", data: map[string]any{"audience": []any{"a pi"}}, field: "audience"},
		hostileCase{name: "sign audience as a glob", path: "sign/r", data: map[string]any{"audience": "*"}, field: "audience"},
		hostileCase{name: "sign audience one good one bad", path: "sign/r", data: map[string]any{"audience": []any{"api", "evil"}}, field: "audience", also: []string{"evil"}},
		hostileCase{name: "sign subject not allowed", path: "sign/r", data: map[string]any{"subject": "root"}, field: "subject", also: []string{"allowed_subjects"}},
		hostileCase{name: "sign subject in another case", path: "sign/r", data: map[string]any{"subject": "SVC-billing"}, field: "subject"},
		hostileCase{name: "sign subject as a glob", path: "sign/r", data: map[string]any{"subject": "*"}, field: "subject"},
		hostileCase{name: "sign subject on a role that allows none", path: "sign/n", data: map[string]any{"subject": "svc-billing"}, field: "subject", also: []string{"allowed_subjects is empty"},
			setup: func(e *testEnv) { e.mustWrite("roles/n", map[string]any{"key": "k", "audiences": "api"}) }},
		hostileCase{name: "sign subject of 1 MiB", path: "sign/r", data: map[string]any{"subject": "svc-" + big}, field: "subject"},
		hostileCase{name: "sign ttl zero", path: "sign/r", data: map[string]any{"ttl": 0}, field: "ttl"},
		hostileCase{name: "sign ttl above max_ttl", path: "sign/r", data: map[string]any{"ttl": "61m"}, field: "ttl", also: []string{"max_ttl", "3600"}},
		hostileCase{name: "sign unknown role", path: "sign/nope", field: "role", also: []string{"nope"}},
		hostileCase{name: "sign before the issuer is set", path: "sign/r", field: "issuer",
			setup: func(e *testEnv) {
				cfg := defaultConfig()
				if err := putJSON(context.Background(), e.storage, configPath, cfg); err != nil {
					e.t.Fatal(err)
				}
				e.b.cacheConfig(cfg)
			}},
		hostileCase{name: "sign batch_input of 101 items", path: "sign/r", data: map[string]any{"batch_input": hostileItems(101)}, field: "batch_input", also: []string{"100"}},
		hostileCase{name: "sign batch_input empty list", path: "sign/r", data: map[string]any{"batch_input": []any{}}, field: "batch_input"},
	)

	// token/<role>: a read that mints takes audience and ttl in its query,
	// checked as sign checks them, and nothing else.
	var read logical.Operation = logical.ReadOperation
	for _, f := range []string{"claims", "subject", "batch_input", "tll", "Audience", "kid", "alg", "role"} {
		add(hostileCase{name: "token query parameter " + f, op: read, path: "token/r", data: map[string]any{f: "x"}, field: f, also: []string{"unknown field", "audience, ttl"}})
	}
	add(
		hostileCase{name: "token claims as an object", op: read, path: "token/r", data: map[string]any{"claims": map[string]any{"scope": "x"}}, field: "claims", also: []string{"unknown field"}},
		hostileCase{name: "token typo beside good parameters", op: read, path: "token/r", data: map[string]any{"tll": "60", "ttl": "60", "audience": "api"}, field: "tll"},
		hostileCase{name: "token audience outside the role", op: read, path: "token/r", data: map[string]any{"audience": "https://evil.example"}, field: "audience", also: []string{"evil"}},
		hostileCase{name: "token audience in another case", op: read, path: "token/r", data: map[string]any{"audience": "API"}, field: "audience"},
		hostileCase{name: "token audience as a glob", op: read, path: "token/r", data: map[string]any{"audience": "*"}, field: "audience"},
		hostileCase{name: "token audience one good one bad", op: read, path: "token/r", data: map[string]any{"audience": "api,evil"}, field: "audience", also: []string{"evil"}},
		hostileCase{name: "token ttl zero", op: read, path: "token/r", data: map[string]any{"ttl": "0"}, field: "ttl"},
		hostileCase{name: "token ttl above max_ttl", op: read, path: "token/r", data: map[string]any{"ttl": "61m"}, field: "ttl", also: []string{"max_ttl", "3600"}},
		hostileCase{name: "token unknown role", op: read, path: "token/nope", field: "role", also: []string{"nope"}},
		hostileCase{name: "token role without allow_token_read", op: read, path: "token/n", field: "allow_token_read", also: []string{"allow_token_read=true", "may mint"},
			setup: func(e *testEnv) { e.mustWrite("roles/n", map[string]any{"key": "k", "audiences": "api"}) }},
		hostileCase{name: "token role that opted out again", op: read, path: "token/r", field: "allow_token_read",
			setup: func(e *testEnv) { e.mustWrite("roles/r", map[string]any{"allow_token_read": false}) }},
		hostileCase{name: "token before the issuer is set", op: read, path: "token/r", field: "issuer",
			setup: func(e *testEnv) {
				cfg := defaultConfig()
				if err := putJSON(context.Background(), e.storage, configPath, cfg); err != nil {
					e.t.Fatal(err)
				}
				e.b.cacheConfig(cfg)
			}},
	)
	for _, f := range []string{"claims", "audience", "subject", "ttl"} {
		v := map[string]any{"claims": map[string]any{}, "audience": "api", "subject": "svc-a", "ttl": 60}[f]
		add(hostileCase{name: "sign " + f + " beside batch_input", path: "sign/r", data: map[string]any{"batch_input": hostileItems(1), f: v}, field: f, also: []string{"inside each batch_input item"}})
	}
	cs = append(cs, hostilePublisherCases(big)...)
	cs = append(cs, hostileAzureCases(big)...)
	return cs
}

// hostilePublisherCases are the values publishers/<name> and the config's
// publishers_allow_ambient_credentials must refuse: a missing or unknown
// type, a missing bucket or url, outbound URLs that are not https off
// loopback or that reach link-local and metadata addresses, user info,
// queries and fragments, object paths that escape their base, credentials
// that cannot be what was issued, and ambient credentials the mount does
// not allow.
func hostilePublisherCases(big string) []hostileCase {
	var cs []hostileCase
	add := func(c ...hostileCase) { cs = append(cs, c...) }
	newS3 := func(extra map[string]any) map[string]any { return s3Publisher(extra) }
	newDAV := func(extra map[string]any) map[string]any { return davPublisher(extra) }
	allowAmbient := func(e *testEnv) { e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true}) }

	// type
	for _, typ := range []string{"GCS", "S3", "WebDAV", "s3 ", "", big} {
		add(hostileCase{name: fmt.Sprintf("publishers new type %.12q", typ), path: "publishers/new", data: newS3(map[string]any{"type": typ}), field: "type"})
	}
	add(
		hostileCase{name: "publishers new without type", path: "publishers/new", data: map[string]any{"bucket": "b-keys", "region": "us-east-1"}, field: "type", also: []string{"required"}},
		hostileCase{name: "publishers existing type changed", path: "publishers/p", data: map[string]any{"type": "webdav"}, field: "type", also: []string{"cannot change"}},
		hostileCase{name: "publishers new one past the limit", path: "publishers/new", data: newDAV(nil), field: "name", also: []string{"limit"},
			setup: func(e *testEnv) {
				for i := len(e.b.publishers); i < maxPublishers; i++ {
					e.mustWrite(fmt.Sprintf("publishers/extra%d", i), davPublisher(nil))
				}
			}},
	)
	// Fields of the other type.
	for _, f := range []string{"bucket", "region", "endpoint", "path_style", "access_key_id", "secret_access_key", "session_token"} {
		v := any("x")
		if f == "path_style" {
			v = true
		}
		want := "type=s3 publishers only"
		if f == "bucket" || f == "endpoint" {
			want = "type=s3 and type=gcs publishers only"
		}
		add(hostileCase{name: "publishers webdav given " + f, path: "publishers/w", data: map[string]any{f: v}, field: f, also: []string{want}})
	}
	add(hostileCase{name: "publishers s3 given credentials_json", path: "publishers/p", data: map[string]any{"credentials_json": "{}"}, field: "credentials_json", also: []string{"type=gcs publishers only"}})
	// A gcs publisher's key and bucket.
	newGCS := func(extra map[string]any) map[string]any {
		d := map[string]any{"type": "gcs", "bucket": "b-keys", "credentials_json": `{"type":"service_account"}`}
		maps.Copy(d, extra)
		return d
	}
	for _, v := range []string{"not json", `["service_account"]`, `{"type":"external_account","credential_source":{"file":"/etc/passwd"}}`,
		`{"type":"authorized_user"}`, `{"type":"service_account"}`, `{"type":"service_account","client_email":"a@b","private_key":"x"}`, big} {
		add(hostileCase{name: fmt.Sprintf("publishers gcs credentials_json %.60q", v), path: "publishers/new", data: newGCS(map[string]any{"credentials_json": v}), field: "credentials_json"})
	}
	for _, b := range []string{"goog-keys", "my-google-keys", "a..b", "Keys"} {
		add(hostileCase{name: fmt.Sprintf("publishers gcs bucket %q", b), path: "publishers/new", data: newGCS(map[string]any{"bucket": b}), field: "bucket"})
	}
	add(
		hostileCase{name: "publishers gcs endpoint with a path", path: "publishers/new", data: newGCS(map[string]any{"endpoint": "https://storage.example.com/storage/v1/"}), field: "endpoint", also: []string{"path"}},
		hostileCase{name: "publishers new gcs without credentials", path: "publishers/new", data: map[string]any{"type": "gcs", "bucket": "b-keys", "endpoint": "http://127.0.0.1:4443"}, field: "credentials_json", also: []string{"publishers_allow_ambient_credentials=true"}},
	)
	for _, f := range []string{"url", "username", "password"} {
		add(hostileCase{name: "publishers s3 given " + f, path: "publishers/p", data: map[string]any{f: "x"}, field: f, also: []string{"type=webdav publishers only"}})
	}
	// bucket and region
	add(
		hostileCase{name: "publishers new s3 without bucket", path: "publishers/new", data: newS3(map[string]any{"bucket": ""}), field: "bucket", also: []string{"required"}},
		hostileCase{name: "publishers new s3 without region", path: "publishers/new", data: newS3(map[string]any{"region": ""}), field: "region", also: []string{"required"}},
	)
	for _, b := range []string{"ab", "Keys", "a..b", "a/b", "-ab", "10.0.0.1", "a b", strings.Repeat("b", 64), big} {
		add(hostileCase{name: fmt.Sprintf("publishers bucket %.16q", b), path: "publishers/p", data: map[string]any{"bucket": b}, field: "bucket"})
	}
	for _, r := range []string{"EU-WEST-1", "eu west 1", "eu_west_1", strings.Repeat("r", 65)} {
		add(hostileCase{name: fmt.Sprintf("publishers region %.16q", r), path: "publishers/p", data: map[string]any{"region": r}, field: "region"})
	}
	// Outbound URLs: endpoint (s3), url (webdav), public_url (both).
	outbound := []string{
		"http://s3.example.com/", "http://10.0.0.1:9000/", "ftp://s3.example.com/", "s3.example.com/",
		"https://user:pw@s3.example.com/", "https://s3.example.com/?x=1", "https://s3.example.com/#f",
		"https://169.254.169.254/", "http://169.254.169.254/", "https://[fe80::1]/", "https://[fe80::1%25eth0]/",
		"https://[::ffff:169.254.169.254]/", "https://[64:ff9b::a9fe:a9fe]/", "https://[fd00:ec2::254]/", "https://100.100.100.200/",
		"https://0.0.0.0/", "https://[::]/", "https://224.0.0.1/", "https://2852039166/", "https://0xa9fea9fe/", "https://169.254.169.254./",
		"https://s3 .example.com/", "https://" + big + "/",
	}
	for _, u := range outbound {
		add(
			hostileCase{name: fmt.Sprintf("publishers endpoint %.40q", u), path: "publishers/p", data: map[string]any{"endpoint": u}, field: "endpoint"},
			hostileCase{name: fmt.Sprintf("publishers url %.40q", u), path: "publishers/w", data: map[string]any{"url": u}, field: "url"},
			hostileCase{name: fmt.Sprintf("publishers public_url %.40q", u), path: "publishers/p", data: map[string]any{"public_url": u}, field: "public_url"},
		)
	}
	add(
		hostileCase{name: "publishers new webdav without url", path: "publishers/new", data: newDAV(map[string]any{"url": ""}), field: "url", also: []string{"required"}},
		hostileCase{name: "publishers url without a trailing slash", path: "publishers/w", data: map[string]any{"url": "https://keys.example.com/dav"}, field: "url", also: []string{"slash"}},
		hostileCase{name: "publishers public_url without a trailing slash", path: "publishers/p", data: map[string]any{"public_url": "https://keys.example.com/jwt"}, field: "public_url", also: []string{"slash"}},
		hostileCase{name: "publishers public_url with an empty query", path: "publishers/p", data: map[string]any{"public_url": "https://keys.example.com/?"}, field: "public_url", also: []string{"query"}},
	)
	// prefix and jwks_path
	for _, v := range []string{"tenant-a", "/tenant-a/", "a//", "../", "a/../b/", "a b/", "a?b/", "a%2f/", big} {
		add(hostileCase{name: fmt.Sprintf("publishers prefix %.16q", v), path: "publishers/p", data: map[string]any{"prefix": v}, field: "prefix"})
	}
	for _, v := range []string{"", "/jwks.json", "keys/", "../jwks.json", ".well-known/openid-configuration", "a#b", big} {
		add(hostileCase{name: fmt.Sprintf("publishers jwks_path %.16q", v), path: "publishers/p", data: map[string]any{"jwks_path": v}, field: "jwks_path"})
	}
	// profile
	add(hostileCase{name: "publishers profile huge", path: "publishers/p", data: map[string]any{"profile": big}, field: "profile"})
	for _, v := range []string{"", "AWS", "aws ", "entra"} {
		add(hostileCase{name: fmt.Sprintf("publishers profile %.16q", v), path: "publishers/p", data: map[string]any{"profile": v}, field: "profile", also: []string{"generic, aws, gcp, azure"}})
	}
	add(hostileCase{name: "publishers profile azure over an ES256 ring", path: "publishers/p", data: map[string]any{"profile": "azure"}, field: "profile", also: []string{"ES256", "profile=azure", "take only RS256"}})
	// ring
	add(
		hostileCase{name: "publishers ring missing", path: "publishers/p", data: map[string]any{"ring": "nope"}, field: "ring", also: []string{"nope"}},
		hostileCase{name: "publishers ring in upper case", path: "publishers/p", data: map[string]any{"ring": "K"}, field: "ring", also: []string{"ring=k"}},
		hostileCase{name: "publishers ring deleted", path: "publishers/p", data: map[string]any{"ring": "d"}, field: "ring", setup: func(e *testEnv) {
			hostileRingD(e)
			if _, err := e.do(logical.DeleteOperation, "keys/d", nil); err != nil {
				e.t.Fatal(err)
			}
		}},
		hostileCase{name: "publishers ring of 1 MiB", path: "publishers/p", data: map[string]any{"ring": big}, field: "ring"},
	)
	// Credentials: pairs, shapes, and ambient credentials the mount does
	// not allow.
	add(
		hostileCase{name: "publishers new s3 without credentials", path: "publishers/new", data: map[string]any{"type": "s3", "bucket": "b-keys", "region": "us-east-1"}, field: "access_key_id", also: []string{"publishers_allow_ambient_credentials=true"}},
		hostileCase{name: "publishers new webdav without credentials", path: "publishers/new", data: map[string]any{"type": "webdav", "url": "https://keys.example.com/"}, field: "username", also: []string{"publishers_allow_ambient_credentials=true"}},
		hostileCase{name: "publishers existing s3 credentials cleared", path: "publishers/p", data: map[string]any{"access_key_id": "", "secret_access_key": ""}, field: "access_key_id", also: []string{"ambient"}},
		hostileCase{name: "publishers existing webdav credentials cleared", path: "publishers/w", data: map[string]any{"username": "", "password": ""}, field: "username", also: []string{"ambient"}},
		hostileCase{name: "publishers access_key_id without secret", path: "publishers/new", data: newS3(map[string]any{"secret_access_key": ""}), field: "secret_access_key", also: []string{"go together"}},
		hostileCase{name: "publishers secret without access_key_id", path: "publishers/p", data: map[string]any{"access_key_id": ""}, field: "access_key_id", also: []string{"go together"}},
		hostileCase{name: "publishers session_token without keys", path: "publishers/new", data: newS3(map[string]any{"access_key_id": "", "secret_access_key": "", "session_token": "t"}), field: "session_token",
			setup: allowAmbient},
		hostileCase{name: "publishers session_token of 4097 bytes", path: "publishers/p", data: map[string]any{"session_token": strings.Repeat("t", maxStringLen+1)}, field: "session_token"},
		hostileCase{name: "publishers username without password", path: "publishers/w", data: map[string]any{"password": ""}, field: "password", also: []string{"go together"}},
		hostileCase{name: "publishers password without username", path: "publishers/w", data: map[string]any{"username": ""}, field: "username", also: []string{"go together"}},
		hostileCase{name: "publishers username with a colon", path: "publishers/w", data: map[string]any{"username": "a:b"}, field: "username", also: []string{"colon"}},
		hostileCase{name: "publishers config ambient withdrawn while relied on", path: "config", data: map[string]any{"publishers_allow_ambient_credentials": false}, field: "publishers_allow_ambient_credentials", also: []string{"amb"},
			setup: func(e *testEnv) {
				allowAmbient(e)
				e.mustWrite("publishers/amb", map[string]any{"type": "webdav", "url": "https://keys.example.com/"})
			}},
	)
	for field, max := range map[string]int{"access_key_id": maxAccessKeyIDLen, "secret_access_key": maxSecretKeyLen} {
		for label, v := range map[string]string{"with a space": "AK ID", "with a newline": "AKID\n", "non-ASCII": "AKIDé", "too long": strings.Repeat("k", max+1)} {
			add(hostileCase{name: "publishers " + field + " " + label, path: "publishers/p", data: map[string]any{field: v}, field: field})
		}
	}
	for label, v := range map[string]string{"with a tab": "pw\t1", "non-ASCII": "pässword", "too long": strings.Repeat("p", maxPasswordLen+1)} {
		add(hostileCase{name: "publishers password " + label, path: "publishers/w", data: map[string]any{"password": v}, field: "password"})
	}
	return cs
}

func hostileRingD(e *testEnv) {
	e.t.Helper()
	e.mustWrite("keys/d", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
}

func hostileManyClaims(n int) map[string]any {
	m := map[string]any{}
	for i := 0; i < n; i++ {
		m[fmt.Sprintf("c%03d", i)] = i
	}
	return m
}

func hostileItems(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = map[string]any{}
	}
	return out
}

// hostileSetup is the mount every case starts from: an issuer, a signing
// ES256 ring k and a role r with a static claim, allowed claims and subjects,
// which also mints on a read of token/r; an s3 publisher p of ring k and a
// webdav publisher w, both with credentials.
func hostileSetup(t *testing.T) *testEnv {
	t.Helper()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{
		"key": "k", "audiences": "api,api2", "claims": map[string]any{"tier": "gold"},
		"allowed_claims": "scope,n", "allowed_subjects": "svc-*", "ttl": "15m", "max_ttl": "1h",
		"allow_token_read": true,
	})
	e.mustWrite("publishers/p", s3Publisher(map[string]any{"ring": "k"}))
	e.mustWrite("publishers/w", davPublisher(nil))
	return e
}

// hostileReads is what a reader sees of the mount: config, every ring and
// role, and the JWKS; a refused write must leave it as it was.
func hostileReads(e *testEnv) string {
	e.t.Helper()
	var parts []string
	for _, p := range []string{"config", "keys/k", "roles/r", "keys/d", "roles/n", "publishers/p", "publishers/w", "publishers/new"} {
		resp := e.read(p)
		if resp == nil {
			parts = append(parts, p+": <none>")
			continue
		}
		b, _ := json.Marshal(resp.Data)
		parts = append(parts, p+": "+string(b))
	}
	_, body, _ := e.jwks("jwks")
	parts = append(parts, "jwks: "+string(body))
	return strings.Join(parts, "\n")
}

// hostileMessage checks that msg names field: "field: ..." or an unknown
// field message that lists it.
func hostileNamesField(msg, field string) bool {
	if strings.HasPrefix(msg, field+":") {
		return true
	}
	// The framework's own check, which is what deletes get.
	if strings.HasPrefix(msg, "Field validation failed") && strings.Contains(msg, `field "`+field+`"`) {
		return true
	}
	if head, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(rest, "unknown field") {
		// "a, b: unknown field; ...", one refusal for every unknown field.
		for _, w := range strings.FieldsFunc(head, func(r rune) bool { return r == ' ' || r == ',' }) {
			if w == field {
				return true
			}
		}
	}
	return false
}

func hostileRun(t *testing.T, tc hostileCase) {
	t.Helper()
	e := hostileSetup(t)
	if tc.setup != nil {
		tc.setup(e)
	}
	before := dump(t, e.storage)
	reads := hostileReads(e)
	op := tc.op
	if op == "" {
		op = logical.UpdateOperation
	}
	data := tc.data
	if tc.dataFrom != nil {
		data = tc.dataFrom(e)
	}
	resp, err := e.do(op, tc.path, data)
	if tc.unsupported {
		if err != logical.ErrUnsupportedPath || resp != nil {
			t.Fatalf("want an unsupported path, got err=%v resp=%.300s", err, respErr(resp))
		}
		sameStorage(t, before, dump(t, e.storage))
		return
	}
	refused := err == logical.ErrInvalidRequest || (err == nil && resp != nil && resp.IsError())
	if !refused {
		t.Fatalf("want a 400, got err=%v resp=%.300s", err, respErr(resp))
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("want an error response, got err=%v resp=%.300s", err, respErr(resp))
	}
	msg := resp.Error().Error()
	if !hostileNamesField(msg, tc.field) {
		t.Fatalf("message does not name field %q: %.300s", tc.field, msg)
	}
	for _, f := range tc.also {
		if !strings.Contains(msg, f) {
			t.Fatalf("message does not mention %q: %.300s", f, msg)
		}
	}
	sameStorage(t, before, dump(t, e.storage))
	if after := hostileReads(e); after != reads {
		t.Fatalf("a refused write changed what readers see:\nbefore %.2000s\nafter  %.2000s", reads, after)
	}
}

// TestHostileBadInputMatrix is the bad-input matrix over every field of every
// writable path.
func TestHostileBadInputMatrix(t *testing.T) {
	t.Parallel()
	typeCases := hostileTypeCases(t)
	semantic := hostileSemanticCases()
	all := append(append([]hostileCase{}, typeCases...), semantic...)
	seen := map[string]bool{}
	for _, tc := range all {
		if seen[tc.name] {
			t.Fatalf("duplicate case name %q", tc.name)
		}
		seen[tc.name] = true
		t.Run(tc.name, func(t *testing.T) { hostileRun(t, tc) })
	}
	t.Logf("bad-input matrix: %d cases (%d wrong-value cases generated from the schema, %d hand-written)",
		len(all), len(typeCases), len(semantic))
}

// hostileBatchCase is one bad batch_input item: its own error names the
// field, and the good item next to it still gets a token.
type hostileBatchCase struct {
	name  string
	item  any
	field string
	also  []string
}

// TestHostileBatchItems: a bad batch_input item gets its own error naming
// the field at fault and no token, the good item beside it still gets a
// token that verifies, and nothing is stored.
func TestHostileBatchItems(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("a", hostileMiB)
	cases := []hostileBatchCase{
		{"not an object", "x", "batch_input item", nil},
		{"a number", 5, "batch_input item", nil},
		{"null", nil, "batch_input item", nil},
		{"a list", []any{map[string]any{}}, "batch_input item", nil},
		{"unknown field", map[string]any{"exportable": true}, "exportable", []string{"unknown field"}},
		{"field in upper case", map[string]any{"TTL": 60}, "TTL", []string{"unknown field"}},
		{"claims not an object", map[string]any{"claims": 5}, "claims", nil},
		{"claims a JSON list", map[string]any{"claims": "[1]"}, "claims", nil},
		{"claims bad JSON", map[string]any{"claims": "{bad"}, "claims", nil},
		{"claims invalid UTF-8 text", map[string]any{"claims": "{\"scope\":\"\xff\"}"}, "claims", nil},
		{"claims duplicate names as text", map[string]any{"claims": `{"scope":1,"scope":2}`}, "claims", []string{"twice"}},
		{"claims case variants", map[string]any{"claims": map[string]any{"scope": 1, "SCOPE": 2}}, "claims", []string{"case"}},
		{"claims too many", map[string]any{"claims": hostileManyClaims(65)}, "claims", []string{"64"}},
		{"claims too deep", map[string]any{"claims": map[string]any{"scope": hostileDeepMap(6)}}, "claims", []string{"deeper"}},
		{"claims over 8 KiB", map[string]any{"claims": map[string]any{"scope": strings.Repeat("x", 8*hostileKiB)}}, "claims", []string{"bytes"}},
		{"claims of 1 MiB as text", map[string]any{"claims": `{"scope":"` + big + `"}`}, "claims", []string{"bytes"}},
		{"claims not allowed", map[string]any{"claims": map[string]any{"admin": true}}, "claims", []string{"allowed_claims"}},
		{"claims override a static claim", map[string]any{"claims": map[string]any{"Tier": "x"}}, "claims", []string{"static"}},
		{"audience outside the role", map[string]any{"audience": "evil"}, "audience", nil},
		{"audience not a list", map[string]any{"audience": map[string]any{}}, "audience", nil},
		{"subject not allowed", map[string]any{"subject": "root"}, "subject", nil},
		{"subject invalid UTF-8", map[string]any{"subject": "svc-\xff"}, "subject", nil},
		{"subject not a string", map[string]any{"subject": 5}, "subject", nil},
		{"ttl above max_ttl", map[string]any{"ttl": "2h"}, "ttl", []string{"max_ttl"}},
		{"ttl negative", map[string]any{"ttl": -1}, "ttl", []string{"negative"}},
		{"ttl huge", map[string]any{"ttl": "87601h"}, "ttl", []string{"ten-year"}},
		{"ttl zero", map[string]any{"ttl": 0}, "ttl", nil},
		{"ttl not a duration", map[string]any{"ttl": "soon"}, "ttl", nil},
		{"ttl a boolean", map[string]any{"ttl": true}, "ttl", nil},
	}
	// Every field of a batch item, null (which once killed the process) and
	// huge.
	for _, f := range slices.Sorted(maps.Keys(signFields)) {
		cases = append(cases,
			hostileBatchCase{f + " null", map[string]any{f: nil}, f, []string{"null"}},
			hostileBatchCase{f + " a huge number", map[string]any{f: json.Number("1" + strings.Repeat("0", 400))}, f, nil},
			hostileBatchCase{f + " a float", map[string]any{f: 1e300}, f, nil},
		)
	}
	cases = append(cases, hostileBatchCase{"claims with a null claim", map[string]any{"claims": map[string]any{"scope": nil}}, "claims", []string{"null"}})
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "Iat", "EXP", "iſs"} {
		cases = append(cases, hostileBatchCase{"reserved claim " + name, map[string]any{"claims": map[string]any{name: 1}}, "claims", []string{"reserved"}})
	}
	for _, h := range hostileHeaderNames {
		cases = append(cases, hostileBatchCase{"header name " + h + " as a field", map[string]any{h: "x"}, h, []string{"unknown field"}})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := hostileSetup(t)
			before := dump(t, e.storage)
			good := map[string]any{"claims": map[string]any{"scope": "read"}}
			resp := e.mustWrite("sign/r", map[string]any{"batch_input": []any{tc.item, good}})
			results, ok := resp.Data["batch_results"].([]map[string]any)
			if !ok || len(results) != 2 {
				t.Fatalf("batch_results %v", resp.Data)
			}
			msg, _ := results[0]["error"].(string)
			if _, tok := results[0]["token"]; tok || msg == "" {
				t.Fatalf("bad item got %v, want an error and no token", results[0])
			}
			if !hostileNamesField(msg, tc.field) {
				t.Fatalf("item error does not name %q: %.300s", tc.field, msg)
			}
			for _, f := range tc.also {
				if !strings.Contains(msg, f) {
					t.Fatalf("item error does not mention %q: %.300s", f, msg)
				}
			}
			tok, _ := results[1]["token"].(string)
			if tok == "" {
				t.Fatalf("the good item next to a bad one got no token: %v", results[1])
			}
			_, body, _ := e.jwks("jwks")
			if _, err := verifyJose(t, tok, body, e.clock.Now()); err != nil {
				t.Fatalf("the good item's token does not verify: %v", err)
			}
			sameStorage(t, before, dump(t, e.storage))
		})
	}
	t.Logf("batch_input items: %d bad-item cases", len(cases))
}

// TestHostileMatrixCoversEveryPath fails when the backend has a writable path
// that none of hostileWritablePaths reaches, or a field of one that no
// hand-written case (hostileSemanticCases) refuses. The wrong-type cases are
// generated from the schema and cover every field by construction; the
// hand-written ones say what a field's values mean, so a field added to the
// schema fails here until someone writes down what it must refuse.
func TestHostileMatrixCoversEveryPath(t *testing.T) {
	t.Parallel()
	b := newBackend(systemClock{start: time.Now()})
	reached := map[*framework.Path]bool{}
	for _, p := range append(append([]string{}, hostileWritablePaths...), hostileQueryPaths...) {
		reached[b.Route(p)] = true
	}
	// Fields with no value to refuse beyond a wrong type, and why.
	noSemanticCase := map[string]string{
		"roles/ name":             "a role's name is the request path, which wins over a name in the body (TestHostilePathParametersWin); every name the path admits is valid",
		"roles/ allow_token_read": "a boolean (its wrong types and null are generated): either value is a valid role; what false refuses is tested on token/<role>",
		"keys/ revoke_active":     "a boolean (its wrong types are generated): a rotation that revokes is never refused for the bounds, since it only takes a key out of the JWKS",
		"publishers/ required":    "a boolean (its wrong types and null are generated): either value is a valid publisher",
	}
	covered := map[string]bool{}
	for _, tc := range hostileSemanticCases() {
		if tc.unsupported {
			continue // a path the plugin does not serve: no field to cover
		}
		p := b.Route(tc.path)
		if p == nil {
			t.Fatalf("case %q: no route for %s", tc.name, tc.path)
		}
		covered[p.Pattern+" "+tc.field] = true
	}
	n := 0
	for _, p := range b.Paths {
		writable := false
		for op := range p.Operations {
			writable = writable || op == logical.UpdateOperation || op == logical.CreateOperation
		}
		// A read that mints is checked like a write.
		writable = writable || strings.HasPrefix(p.Pattern, strings.TrimSuffix(tokenPrefix, "/"))
		if !writable {
			continue
		}
		n++
		if !reached[p] {
			t.Errorf("writable path %s has no hostile cases: add a request path for it to hostileWritablePaths", p.Pattern)
		}
		for f, schema := range p.Fields {
			if strings.HasPrefix(p.Pattern, strings.TrimSuffix(tokenPrefix, "/")) && !schema.Query {
				continue
			}
			exempt := false
			for k := range noSemanticCase {
				prefix, field, _ := strings.Cut(k, " ")
				exempt = exempt || field == f && strings.HasPrefix(p.Pattern, "^"+prefix)
			}
			if !covered[p.Pattern+" "+f] && !exempt {
				t.Errorf("field %s of %s has no hand-written case in hostileSemanticCases: add the values it must refuse", f, p.Pattern)
			}
		}
	}
	if n < 5 {
		t.Fatalf("found only %d writable paths", n)
	}
}

// The body of a request cannot move it to another object: the path's name,
// op and role win over fields of the same name in the body.
func TestHostilePathParametersWin(t *testing.T) {
	t.Parallel()
	e := hostileSetup(t)
	e.mustWrite("keys/k", map[string]any{"name": "other", "rotation_period": "2h"})
	if r := e.read("keys/other"); r != nil {
		t.Fatalf("a body name created ring other: %v", r.Data)
	}
	if got := e.read("keys/k").Data["rotation_period"]; got != int64(7200) {
		t.Fatalf("keys/k rotation_period = %v, want 7200", got)
	}
	e.mustWrite("roles/r", map[string]any{"name": "evil", "ttl": "10m"})
	if r := e.read("roles/evil"); r != nil {
		t.Fatalf("a body name created role evil: %v", r.Data)
	}
	// op=revoke in the body of a rotate is an unknown field: it neither
	// revokes nor rotates.
	active := e.signKID()
	resp, err := e.write("keys/k/rotate", map[string]any{"op": "revoke", "force": true})
	expect400(t, resp, err, "op", "unknown field")
	if e.signKID() != active {
		t.Fatalf("rotate with op=revoke in the body rotated")
	}
	for _, k := range e.ring("k").Keys {
		if k.KID == active && k.RevokedAt != 0 {
			t.Fatalf("the body's op revoked %s", active)
		}
	}
	// role=other in the body of sign/r signs under r.
	e.mustWrite("roles/other", map[string]any{"key": "k", "audiences": "other-aud"})
	tok := e.mustWrite("sign/r", map[string]any{"role": "other"}).Data["token"].(string)
	_, body, _ := e.jwks("jwks")
	claims, err := verifyJose(t, tok, body, e.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if claims["tier"] != "gold" || fmt.Sprint(claims["aud"]) != "[api api2]" {
		t.Fatalf("sign/r with role=other in the body signed %v", claims)
	}
}

// Token hardening.

// hostileHeaderNames are JOSE header parameters (RFC 7515, 7516, 7797, 8555)
// a caller might try to smuggle into a token's header.
var hostileHeaderNames = []string{"alg", "kid", "typ", "cty", "jku", "jwk", "x5u", "x5c", "x5t", "x5t#S256", "crit", "b64", "zip", "enc", "epk", "nonce", "url"}

// hostileHeaderIs requires a token's protected header to be exactly
// {alg, kid, typ} with the given values, with no member repeated.
func hostileHeaderIs(t *testing.T, token, alg, kid, typ string) {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := checkDuplicateNames(string(raw)); err != nil {
		t.Fatalf("header %s: %v", raw, err)
	}
	h := header(t, token)
	if len(h) != 3 || h["alg"] != alg || h["kid"] != kid || h["typ"] != typ {
		t.Fatalf("header %s, want exactly alg=%s kid=%s typ=%s", raw, alg, kid, typ)
	}
}

var hostileNoneOrHMAC = []string{"none", "None", "NONE", "nOnE", "", "HS256", "hs256", "Hs256", "hS256", "HS384", "hs384", "HS512", "Hs512", "hS512"}

// No ring ever takes alg none or an HMAC algorithm, in any spelling, on
// create or on update; every key published and every token signed is
// asymmetric.
func TestHostileNoNoneOrHMAC(t *testing.T) {
	t.Parallel()
	e := hostileSetup(t)
	for _, alg := range hostileNoneOrHMAC {
		for _, path := range []string{"keys/new", "keys/k"} {
			before := dump(t, e.storage)
			resp, err := e.write(path, map[string]any{"algorithm": alg})
			expect400(t, resp, err, "algorithm")
			if !strings.HasPrefix(resp.Error().Error(), "algorithm:") {
				t.Fatalf("%s algorithm=%q: %v", path, alg, resp.Error())
			}
			sameStorage(t, before, dump(t, e.storage))
		}
	}
	for _, alg := range supportedAlgorithms {
		if strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS") {
			t.Fatalf("supportedAlgorithms holds %s", alg)
		}
	}
	// One ring per supported algorithm; every token and key is asymmetric.
	for _, alg := range supportedAlgorithms {
		name := "a-" + strings.ToLower(alg)
		e.setupRing(name, alg, nil)
		e.mustWrite("roles/"+name, map[string]any{"key": name, "audiences": "api"})
		resp := e.mustWrite("sign/"+name, nil)
		hostileHeaderIs(t, resp.Data["token"].(string), alg, resp.Data["kid"].(string), "JWT")
	}
	_, body, _ := e.jwks("jwks")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	algs := map[string]bool{}
	for _, k := range set.Keys {
		kty, _ := k["kty"].(string)
		alg, _ := k["alg"].(string)
		if kty != "RSA" && kty != "EC" && kty != "OKP" {
			t.Fatalf("JWKS key of type %q: %v", kty, k)
		}
		if _, ok := k["k"]; ok || !validAlgorithm(alg) || k["use"] != "sig" {
			t.Fatalf("JWKS key %v", k)
		}
		algs[alg] = true
	}
	if len(algs) != len(supportedAlgorithms) {
		t.Fatalf("JWKS holds algorithms %v, want all of %v", algs, supportedAlgorithms)
	}
	disc := e.read(".well-known/openid-configuration").Data[logical.HTTPRawBody].([]byte)
	var d struct {
		Algs []string `json:"id_token_signing_alg_values_supported"`
	}
	if err := json.Unmarshal(disc, &d); err != nil {
		t.Fatal(err)
	}
	for _, a := range d.Algs {
		if !validAlgorithm(a) {
			t.Fatalf("discovery advertises %q", a)
		}
	}
}

// No caller controls a JOSE header: header names are unknown fields of a
// sign request; as claims (caller or static) they land in the payload only;
// text built to break out of a JSON string stays inside its claim.
func TestHostileNoCallerJOSEHeaders(t *testing.T) {
	t.Parallel()
	e := hostileSetup(t)
	active := e.signKID()
	for _, h := range hostileHeaderNames {
		before := dump(t, e.storage)
		resp, err := e.write("sign/r", map[string]any{h: "attacker"})
		expect400(t, resp, err, h)
		if !hostileNamesField(resp.Error().Error(), h) {
			t.Fatalf("sign field %s: %v", h, resp.Error())
		}
		sameStorage(t, before, dump(t, e.storage))
	}

	evil := map[string]any{
		"alg": "none", "kid": "attacker-kid", "typ": "JWT", "cty": "JWT",
		"jku": "https://evil.example/jwks.json", "jwk": map[string]any{"kty": "oct", "k": "QUFBQQ"},
		"x5u": "https://evil.example/cert.pem", "x5c": []any{"MIIBattacker"}, "x5t": "abc", "x5t#S256": "abc",
		"crit": []any{"exp"}, "b64": false, "zip": "DEF", "enc": "A128GCM", "epk": map[string]any{"kty": "EC"},
		"nonce": "n", "url": "https://evil.example/",
	}
	breakout := `svc-","alg":"none","kid":"attacker","x":"`
	e.mustWrite("roles/h", map[string]any{
		"key": "k", "audiences": []any{"api", `api","alg":"none`}, "allowed_claims": hostileHeaderNames,
		"allowed_subjects": "svc-*", "token_type": "at+jwt",
	})
	e.mustWrite("roles/s", map[string]any{"key": "k", "audiences": "api", "claims": evil})
	evilText, _ := json.Marshal(evil)

	_, jwksBody, _ := e.jwks("jwks")
	check := func(what, token, typ string, wantClaims map[string]any) map[string]any {
		t.Helper()
		hostileHeaderIs(t, token, "ES256", active, typ)
		claims, err := verifyJose(t, token, jwksBody, e.clock.Now())
		if err != nil {
			t.Fatalf("%s: token does not verify: %v", what, err)
		}
		for k, v := range wantClaims {
			got, _ := json.Marshal(claims[k])
			want, _ := json.Marshal(v)
			if string(got) != string(want) {
				t.Fatalf("%s: claim %s = %s, want %s", what, k, got, want)
			}
		}
		return claims
	}
	check("header names as caller claims", e.mustWrite("sign/h", map[string]any{"claims": evil}).Data["token"].(string), "at+jwt", evil)
	check("header names as caller claims in JSON text", e.mustWrite("sign/h", map[string]any{"claims": string(evilText)}).Data["token"].(string), "at+jwt", evil)
	check("header names as static claims", e.mustWrite("sign/s", nil).Data["token"].(string), "JWT", evil)
	batch := e.mustWrite("sign/h", map[string]any{"batch_input": []any{map[string]any{"claims": evil}}}).Data["batch_results"].([]map[string]any)
	check("header names as claims of a batch item", batch[0]["token"].(string), "at+jwt", evil)

	claims := check("JSON break-out in subject, audience and a claim",
		e.mustWrite("sign/h", map[string]any{"subject": breakout, "audience": []any{`api","alg":"none`}, "claims": map[string]any{"jku": `"},{"alg":"none`}}).Data["token"].(string),
		"at+jwt", map[string]any{"sub": breakout, "aud": `api","alg":"none`, "jku": `"},{"alg":"none`})
	if claims["iss"] != "https://vault.example.com/v1/jwt" {
		t.Fatalf("iss %v", claims["iss"])
	}
	// The kid names the active key, which the JWKS publishes with the same alg.
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBody, &set); err != nil {
		t.Fatal(err)
	}
	if keys := set.Key(active); len(keys) != 1 || keys[0].Algorithm != "ES256" {
		t.Fatalf("JWKS entry for %s: %+v", active, keys)
	}
}

// typ comes from the role only, per role, even for roles sharing a ring and
// its cached signer.
func TestHostileTypPerRole(t *testing.T) {
	t.Parallel()
	e := hostileSetup(t)
	kid := e.signKID()
	e.mustWrite("roles/a", map[string]any{"key": "k", "audiences": "api", "token_type": "JWT"})
	e.mustWrite("roles/b", map[string]any{"key": "k", "audiences": "api", "token_type": "at+jwt"})
	for i := 0; i < 5; i++ {
		hostileHeaderIs(t, e.mustWrite("sign/a", nil).Data["token"].(string), "ES256", kid, "JWT")
		hostileHeaderIs(t, e.mustWrite("sign/b", nil).Data["token"].(string), "ES256", kid, "at+jwt")
	}
	results := e.mustWrite("sign/b", map[string]any{"batch_input": hostileItems(10)}).Data["batch_results"].([]map[string]any)
	for _, r := range results {
		hostileHeaderIs(t, r["token"].(string), "ES256", kid, "at+jwt")
	}
	e.mustWrite("roles/a", map[string]any{"token_type": "at+jwt"})
	hostileHeaderIs(t, e.mustWrite("sign/a", nil).Data["token"].(string), "ES256", kid, "at+jwt")
	e.mustWrite("roles/a", map[string]any{"token_type": "JWT"})
	hostileHeaderIs(t, e.mustWrite("sign/a", nil).Data["token"].(string), "ES256", kid, "JWT")
	hostileHeaderIs(t, e.mustWrite("sign/b", nil).Data["token"].(string), "ES256", kid, "at+jwt")
}

// iat, nbf and exp come from Vault's clock: the caller can set none of them
// (as fields, claims or batch items), whatever the clock does.
func TestHostileTimesFromVaultClock(t *testing.T) {
	t.Parallel()
	e := hostileSetup(t)
	for _, f := range []string{"iat", "nbf", "exp", "issued_at", "expires_at", "not_before", "now", "time"} {
		resp, err := e.write("sign/r", map[string]any{f: 1})
		expect400(t, resp, err, f, "unknown field")
	}
	check := func(token string, resp map[string]any, iat, ttl int64) {
		t.Helper()
		_, body, _ := e.jwks("jwks")
		claims, err := verifyJose(t, token, body, time.Unix(iat, 0))
		if err != nil {
			t.Fatalf("%v: response %v, want iat %d", err, resp, iat)
		}
		for k, want := range map[string]int64{"iat": iat, "nbf": iat, "exp": iat + ttl} {
			if got := int64(claims[k].(float64)); got != want {
				t.Fatalf("%s = %d, want %d (clock %d)", k, got, want, e.clock.Now().Unix())
			}
		}
		if resp != nil && (resp["issued_at"] != iat || resp["expires_at"] != iat+ttl) {
			t.Fatalf("response times %v, want %d and %d", resp, iat, iat+ttl)
		}
	}
	for _, step := range []time.Duration{0, 37 * time.Minute, 2*time.Hour + 13*time.Minute + 7*time.Second} {
		e.clock.Advance(step)
		if err := e.maintain(); err != nil {
			t.Fatal(err)
		}
		now := e.clock.Now().Unix()
		resp := e.mustWrite("sign/r", map[string]any{"ttl": "10m"})
		check(resp.Data["token"].(string), resp.Data, now, 600)
		items := e.mustWrite("sign/r", map[string]any{"batch_input": []any{
			map[string]any{"ttl": 60}, map[string]any{"claims": map[string]any{"iat": 1}}, map[string]any{"iat": 1},
		}}).Data["batch_results"].([]map[string]any)
		check(items[0]["token"].(string), items[0], now, 60)
		for _, it := range items[1:] {
			if _, ok := it["token"]; ok || !strings.Contains(fmt.Sprint(it["error"]), "iat") {
				t.Fatalf("a batch item setting iat got %v", it)
			}
		}
	}
	// The wall clock steps back an hour: the token's times are still Vault's
	// clock (what verifiers compare them with), while the key that signs is
	// chosen at the high-water time, so it is the one that signed last.
	last := e.mustWrite("sign/r", nil).Data["kid"]
	e.clock.Advance(-time.Hour)
	resp := e.mustWrite("sign/r", map[string]any{"ttl": "5m"})
	check(resp.Data["token"].(string), resp.Data, e.clock.Now().Unix(), 300)
	if resp.Data["kid"] != last {
		t.Fatalf("after the clock stepped back, kid %v signed instead of %v", resp.Data["kid"], last)
	}
}

// jti is 128 random bits, unique across singles, batches and restarts, and
// the response's jti is the token's.
func TestHostileJTIUnique(t *testing.T) {
	t.Parallel()
	e := hostileSetup(t)
	seen := map[string]bool{}
	_, body, _ := e.jwks("jwks")
	record := func(r map[string]any) {
		t.Helper()
		jti, _ := r["jti"].(string)
		raw, err := base64.RawURLEncoding.DecodeString(jti)
		if err != nil || len(raw) != 16 {
			t.Fatalf("jti %q is not 16 bytes of base64url", jti)
		}
		if seen[jti] {
			t.Fatalf("jti %s repeated after %d tokens", jti, len(seen))
		}
		seen[jti] = true
		claims, err := verifyJose(t, r["token"].(string), body, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if claims["jti"] != jti {
			t.Fatalf("token jti %v, response jti %s", claims["jti"], jti)
		}
	}
	for round := 0; round < 2; round++ {
		for i := 0; i < 100; i++ {
			record(e.mustWrite("sign/r", nil).Data)
		}
		for b := 0; b < 4; b++ {
			for _, r := range e.mustWrite("sign/r", map[string]any{"batch_input": hostileItems(100)}).Data["batch_results"].([]map[string]any) {
				record(r)
			}
		}
		e = e.restart()
	}
	if len(seen) != 1000 {
		t.Fatalf("%d tokens", len(seen))
	}
}

// A kid is bound to one alg for life: across algorithm and size changes,
// forced rotations, revocations, a rollback and maintenance, every kid seen
// in reads, the JWKS and token headers keeps the alg it was first seen
// with, and is the RFC 7638 thumbprint of its key.
func TestHostileOneAlgPerKidForLife(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "RS256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	algOf := map[string]string{}
	bind := func(where, kid, alg string) {
		t.Helper()
		if prev, ok := algOf[kid]; ok && prev != alg {
			t.Fatalf("%s: kid %s has alg %s, first seen as %s", where, kid, alg, prev)
		}
		algOf[kid] = alg
	}
	observe := func() {
		t.Helper()
		for _, k := range e.read("keys/k").Data["signing_keys"].([]map[string]any) {
			bind("keys/k", k["kid"].(string), k["alg"].(string))
		}
		_, body, _ := e.jwks("jwks")
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			t.Fatal(err)
		}
		for _, k := range set.Keys {
			tp, err := k.Thumbprint(crypto.SHA256)
			if err != nil || base64.RawURLEncoding.EncodeToString(tp) != k.KeyID {
				t.Fatalf("kid %s is not its key's thumbprint", k.KeyID)
			}
			bind("jwks", k.KeyID, k.Algorithm)
		}
		resp := e.mustWrite("sign/r", nil)
		tok := resp.Data["token"].(string)
		h := header(t, tok)
		bind("token header", h["kid"].(string), h["alg"].(string))
		if _, err := verifyJose(t, tok, body, e.clock.Now()); err != nil {
			t.Fatalf("token of %v does not verify: %v", h, err)
		}
	}
	observe()
	steps := []map[string]any{
		{"algorithm": "ES256"}, {"algorithm": "EdDSA"}, {"algorithm": "PS384"},
		{"algorithm": "RS256", "rsa_bits": 3072}, {"algorithm": "ES512"},
	}
	for i, settings := range steps {
		e.mustWrite("keys/k", settings)
		observe()
		for j := 0; j < 3; j++ {
			e.mustWrite("keys/k/rotate", map[string]any{"force": true})
			observe()
		}
		switch i {
		case 1:
			e.mustWrite("keys/k/revoke", map[string]any{"kid": e.signKID()})
			observe()
		case 2:
			e.clock.Advance(time.Minute)
			e.mustWrite("keys/k/rollback", nil)
			observe()
		}
		e.clock.Advance(30 * time.Minute)
		if err := e.maintain(); err != nil {
			t.Fatal(err)
		}
		observe()
	}
	algs := map[string]bool{}
	for _, a := range algOf {
		algs[a] = true
	}
	if len(algs) < 5 || len(algOf) < 15 {
		t.Fatalf("saw %d kids with algorithms %v; the test did not exercise enough keys", len(algOf), algs)
	}
}
