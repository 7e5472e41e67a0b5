package jwtrotor

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/helper/identitytpl"
	"github.com/hashicorp/vault/sdk/logical"
)

// Fuzz targets for every parser of user input. `make test` runs each
// briefly from the seeds below; `make fuzz` runs them longer. Each states,
// above it, the property it checks beyond "no panic": a round trip, agreement
// with a reference outside the plugin, or an exact match that must hold;
// its seeds include the shapes that once slipped through.

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

// FuzzDuration: parseDuration agrees with a reference built on the standard
// library: surrounding space is ignored; whole seconds (strconv.ParseInt),
// whole days ("<n>d", as Vault's parseutil reads them) or a Go duration
// (time.ParseDuration) that is a whole number of seconds; nothing negative,
// and no minus sign before a unit ("-0s" and "-0d" as well as "-1d"; a
// bare "-0" is the number 0);
// at most ten years. What it accepts round-trips: the seconds written as a
// number, as a Go duration, and as a JSON number parse back to the same
// value.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"1h", "90s", "3600", "-1", "1.5s", "", "9999999999999h", "1h30m", " 5 ", "0x10",
		// Fractions of a second, signs, days, the ten-year edge and overflow.
		"1500ms", "1h0.5s", "0.5s", "-0s", "-0d", "-0", "+5s", "+5", "1d", "3650d", "3651d", "1.5d", "-1d", "d", "5hd",
		"315360000", "315360001", "87600h", "87600h1s", "9223372036854775807", "-9223372036854775808", "\t90s\n", "1e3", "1_000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, wantOK := referenceDuration(s)
		n, err := parseDuration(s)
		if (err == nil) != wantOK || (wantOK && n != want) {
			t.Fatalf("parseDuration(%q) = %d, %v; the reference says %d, accepted=%v", s, n, err, want, wantOK)
		}
		if err != nil {
			return
		}
		for _, again := range []any{strconv.FormatInt(n, 10), (time.Duration(n) * time.Second).String(), n, float64(n), json.Number(strconv.FormatInt(n, 10))} {
			if m, err := parseDuration(again); err != nil || m != n {
				t.Fatalf("%q parsed to %d, but %#v parses to %d, %v", s, n, again, m, err)
			}
		}
	})
}

// referenceDuration is what a duration field should accept, in seconds.
func referenceDuration(s string) (int64, bool) {
	v := strings.TrimSpace(s)
	var secs int64
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		secs = n
	} else if days, ok := strings.CutSuffix(v, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || strings.HasPrefix(days, "-") || n > maxDurationSeconds/86400 {
			return 0, false
		}
		secs = n * 86400
	} else {
		d, err := time.ParseDuration(v)
		if err != nil || strings.HasPrefix(v, "-") || d%time.Second != 0 {
			return 0, false
		}
		secs = int64(d / time.Second)
	}
	if secs < 0 || secs > maxDurationSeconds {
		return 0, false
	}
	return secs, true
}

// FuzzSubjectTemplate: an accepted subject_template signs a token whose sub
// is exactly what Vault's own identity templating (identitytpl, in ACL mode)
// renders for the caller's entity, or the sign is a 400 about the subject
// when that renders nothing; the plugin's shortcut for the entity id and its
// handling of static subjects must agree with it.
func FuzzSubjectTemplate(f *testing.F) {
	for _, s := range []string{"{{identity.entity.id}}", "svc/{{identity.entity.metadata.team}}", "{{identity.entity.aliases.auth_userpass_1.name}}", "static", "{{", "}}{{", "{{identity.groups.names}}", "{{ identity.entity.name }}x",
		// Text around and between directives, which the entity-id shortcut
		// once had to keep; static subjects with stray braces or spaces.
		"svc/{{identity.entity.id}}/x", "{{identity.entity.id}}{{identity.entity.id}}", "a{{ identity.entity.id }}b", " static ", "x}}y", "a}}",
		"{{identity.entity.metadata.missing}}", "{{identity.entity.aliases.auth_userpass_1.metadata.region}}", "{{identity.entity.aliases.nope.name}}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkSubjectTemplate(s) != nil {
			return
		}
		if !utf8.ValidString(s) || len(s) > maxTemplateLen {
			t.Fatalf("accepted an invalid template %q", s)
		}
		e := newEnv(t)
		e.entity.Aliases = []*logical.Alias{{MountAccessor: "auth_userpass_1", ID: "alias-1", Name: "alice", Metadata: map[string]string{"region": "eu"}}}
		e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt"})
		e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA"})
		e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "a", "subject_template": s})
		_, want, refErr := identitytpl.PopulateString(identitytpl.PopulateStringInput{Mode: identitytpl.ACLTemplating, String: s, Entity: e.entity})
		resp, err := e.write("sign/r", nil)
		if refErr != nil || want == "" {
			if err == nil && resp != nil && !resp.IsError() {
				t.Fatalf("template %q signed, but Vault's templating renders %q, %v", s, want, refErr)
			}
			if resp == nil || !resp.IsError() || !strings.HasPrefix(resp.Error().Error(), "subject") {
				t.Fatalf("template %q: want a 400 about the subject, got %v %s", s, err, respErr(resp))
			}
			return
		}
		if err != nil || resp == nil || resp.IsError() {
			t.Fatalf("template %q renders %q with Vault's templating, but signing failed: %v %s", s, want, err, respErr(resp))
		}
		_, body, _ := e.jwks("jwks")
		claims, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		if claims["sub"] != want {
			t.Fatalf("template %q: sub %q, Vault's templating renders %q", s, claims["sub"], want)
		}
	})
}

// FuzzAudiences: a comma-separated list splits into valid UTF-8 entries
// without commas or surrounding space, and round-trips: the entries joined
// with commas split into the same list.
func FuzzAudiences(f *testing.F) {
	for _, s := range []string{"a,b", "https://api.example.com", ",", " a , b ", "a\xff", "", " ", "a,,b", "\ta\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		list, err := stringList("audiences", s)
		if err != nil {
			return
		}
		for _, a := range list {
			if !utf8.ValidString(a) || strings.Contains(a, ",") || a != strings.TrimSpace(a) {
				t.Fatalf("%q split into %q", s, a)
			}
		}
		again, err := stringList("audiences", strings.Join(list, ","))
		if err != nil || !slices.Equal(again, list) {
			t.Fatalf("%q split into %q, which joined splits into %q (%v)", s, list, again, err)
		}
	})
}

// FuzzGlob: checkGlob accepts exactly the globs with no '*', the lone '*',
// and one '*' at the start or the end; an accepted glob matches a subject
// exactly when a reference built another way says so (the subject starts
// with the text before the star and ends with the text after it, the two
// not overlapping), and it matches every subject that keeps its fixed part.
func FuzzGlob(f *testing.F) {
	for _, g := range []string{"svc-*", "*@example.com", "*", "a*b", "**", "exact", "*a*", ""} {
		f.Add(g, "svc-billing")
	}
	// Shapes a prefix or suffix glob must not match: the fixed part in the
	// middle, or only partly there.
	f.Add("*@example.com", "a@example.com.evil")
	f.Add("svc-*", "evil-svc-billing")
	f.Add("svc-*", "svc")
	f.Add("*.example.com", "example.com")
	f.Add("svc-*", "SVC-billing")
	f.Add("exact", "exact ")
	f.Fuzz(func(t *testing.T, g, s string) {
		stars := strings.Count(g, "*")
		wantAccepted := g != "" && utf8.ValidString(g) &&
			(stars == 0 || g == "*" || stars == 1 && (strings.HasPrefix(g, "*") || strings.HasSuffix(g, "*")))
		if accepted := checkGlob(g) == nil; accepted != wantAccepted {
			t.Fatalf("checkGlob(%q) accepted=%v, want %v", g, accepted, wantAccepted)
		}
		if !wantAccepted {
			return
		}
		pre, suf, star := strings.Cut(g, "*")
		want := s == g
		if star {
			want = len(s) >= len(pre)+len(suf) && s[:len(pre)] == pre && s[len(s)-len(suf):] == suf
		}
		if got := globMatch(g, s); got != want {
			t.Fatalf("globMatch(%q, %q) = %v, want %v", g, s, got, want)
		}
		if !globMatch(g, pre+s+suf) && star {
			t.Fatalf("%q does not match %q, which keeps its fixed part", g, pre+s+suf)
		}
		if !globMatch(g, strings.ReplaceAll(g, "*", "")) {
			t.Fatalf("%q does not match its own fixed part", g)
		}
	})
}

// FuzzIfNoneMatch reads the JWKS with an arbitrary If-None-Match through
// HandleRequest: the current ETag, strong or weak, anywhere in a list of
// tags, gets a 304; a header that does not contain the ETag's opaque value
// (and no *) gets the document; and a tag that only starts like the ETag is
// a different tag, never a 304 (a false 304 would leave a verifier on a key
// set it does not have).
func FuzzIfNoneMatch(f *testing.F) {
	for _, h := range []string{`"abc"`, `W/"abc"`, `"x", "abc"`, "*", "", `"abc`,
		// Separators and spacing around the tags, and near misses.
		",", " , ", "\t", `W/`, `w/"abc"`, `"", ""`, `"x",W/"y"`, `x`, `"`} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, h string) {
		e := newEnv(t)
		e.setupRing("k", "EdDSA", nil)
		status := func(header string) int {
			t.Helper()
			resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks", Storage: e.storage,
				Headers: map[string][]string{"If-None-Match": {header}}, Connection: &logical.Connection{RemoteAddr: "192.0.2.1:1"}})
			if err != nil || resp == nil {
				t.Fatalf("If-None-Match %q: %v %s", header, err, respErr(resp))
			}
			return resp.Data[logical.HTTPStatusCode].(int)
		}
		first, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks", Storage: e.storage})
		if err != nil || first == nil || len(first.Headers["ETag"]) != 1 {
			t.Fatalf("JWKS read: %v %s", err, respErr(first))
		}
		etag := first.Headers["ETag"][0]
		opaque := strings.TrimSuffix(strings.TrimPrefix(etag, `"`), `"`)
		if opaque == "" || etag != `"`+opaque+`"` {
			t.Fatalf("ETag %q is not a strong entity tag", etag)
		}
		for _, header := range []string{etag, "W/" + etag, " " + etag + " ", h + ", " + etag, etag + ", " + h, h + ",W/" + etag} {
			if got := status(header); got != http.StatusNotModified {
				t.Fatalf("If-None-Match %q holds the ETag %s, got %d, want 304", header, etag, got)
			}
		}
		if !strings.Contains(h, opaque) && !strings.Contains(h, "*") {
			if got := status(h); got != http.StatusOK {
				t.Fatalf("If-None-Match %q does not hold the ETag %s, got %d, want 200", h, etag, got)
			}
		}
		if h != "" && !strings.ContainsAny(h, ",*") {
			longer := `"` + opaque + h + `"`
			if got := status(longer); got != http.StatusOK {
				t.Fatalf("If-None-Match %q is another tag than %s, got %d, want 200", longer, etag, got)
			}
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

// FuzzImportUnwrap opens the key material of import ciphertexts (what
// follows the RSA-OAEP part) through openWrappedKey, the import path's
// parser of it, under a fixed AES-256 ephemeral key. What the RFC-pinned
// test wrap makes of key material of 9 to 8192 bytes (the library's bounds;
// the field carries at most 2560) opens to exactly that material; anything
// altered, cut short or shorter, and arbitrary bytes, is refused with the
// one integrity message, the same whatever check failed, or, if it opens,
// is the test wrap of what it opened to: one wrapped form per plaintext, so
// nothing but an honest wrap is ever accepted. unwrapImport, which decrypts
// the RSA-OAEP part first, is checked on the same seeds.
func FuzzImportUnwrap(f *testing.F) {
	kek := sha256.New().Sum(nil) // fixed, so a crasher replays
	_, refErr := openWrappedKey(kek, make([]byte, 24))
	if refErr == nil || !isRefusal(refErr) || !strings.Contains(refErr.Error(), "integrity") {
		f.Fatalf("24 zero bytes: %v; want the integrity refusal", refErr)
	}
	// The whole ciphertext, seeds only: its RSA-OAEP part is the same for
	// every input, so fuzzing it would spend the time on RSA decryption.
	wrapping := testWrappingKey(0)
	enc, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &wrapping.PublicKey, kek, nil)
	if err != nil {
		f.Fatal(err)
	}
	whole := func(kwpPart []byte) ([]byte, error) {
		return unwrapImport(wrapping, base64.StdEncoding.EncodeToString(append(append([]byte(nil), enc...), kwpPart...)))
	}
	for _, n := range []int{0, 1, 8, 9, 15, 16, 17, 48, 138, 1218} {
		plain := bytes.Repeat([]byte{0x5a}, n)
		f.Add(plain, false, uint16(0), byte(0), uint8(0))
		f.Add(plain, false, uint16(n/2), byte(0x80), uint8(0))
		f.Add(plain, false, uint16(0), byte(0), uint8(7))
		f.Add(plain, true, uint16(0), byte(0), uint8(0))
		w := kwpWrapForTest(kek, plain)
		der, err := whole(w)
		if n >= 9 && (err != nil || !bytes.Equal(der, plain)) {
			f.Fatalf("the whole ciphertext of %d bytes opened to %x, %v", n, der, err)
		}
		w[len(w)/2] ^= 0x80
		if der, err := whole(w); der != nil || err == nil || err.Error() != refErr.Error() {
			f.Fatalf("the whole ciphertext of %d bytes, altered: %x, %v; want %q", n, der, err, refErr)
		}
	}
	f.Fuzz(func(t *testing.T, in []byte, raw bool, pos uint16, x byte, cut uint8) {
		if len(in) > 2560 {
			return
		}
		w := in
		if !raw {
			w = kwpWrapForTest(kek, in)
		}
		altered := false
		if x != 0 && len(w) > 0 {
			w = append([]byte(nil), w...)
			w[int(pos)%len(w)] ^= x
			altered = true
		}
		if c := int(cut) % (len(w) + 1); c > 0 {
			w = w[:len(w)-c]
			altered = true
		}
		var der []byte
		var err error
		noPanic(t, "import unwrap", func() { der, err = openWrappedKey(kek, w) })
		if !raw && !altered && len(in) >= 9 {
			if err != nil || !bytes.Equal(der, in) {
				t.Fatalf("the wrap of %d bytes opened to %x, %v", len(in), der, err)
			}
			return
		}
		if err == nil {
			if !bytes.Equal(kwpWrapForTest(kek, der), w) {
				t.Fatalf("accepted a KWP part (%x) that is not the wrap of what it opened to (%x)", w, der)
			}
			return
		}
		if der != nil || err.Error() != refErr.Error() {
			t.Fatalf("%d bytes of KWP (raw=%v, altered=%v): %x, %v; want the one integrity refusal %q", len(w), raw, altered, der, err, refErr)
		}
	})
}

// FuzzOutboundURL: what checkOutboundURL accepts agrees with a reference
// built on net/url and the net package's address parser (not netip, which
// the check uses): an absolute URL without user info, query or fragment,
// https or else http to localhost or a loopback address, ending with a
// slash; a host net.ParseIP reads as an address is not link-local,
// multicast, unspecified or a metadata service; a host it does not read is
// no number a resolver could take for an address. It round-trips: the
// parsed URL written out again is accepted too.
func FuzzOutboundURL(f *testing.F) {
	for _, s := range []string{
		"https://s3.example.com/", "http://127.0.0.1:9000/", "http://[::1]/dav/", "http://localhost/", "https://10.0.0.5/",
		"http://s3.example.com/", "https://user:pw@s3.example.com/", "https://s3.example.com/?", "https://s3.example.com/#",
		"https://169.254.169.254/", "https://[fe80::1%25eth0]/", "https://[::ffff:169.254.169.254]/", "https://[64:ff9b::a9fe:a9fe]/",
		"https://[fd00:ec2::254]/", "https://100.100.100.200/", "https://0.0.0.0/", "https://[::]/", "https://224.0.0.1/",
		"https://2852039166/", "https://0xa9fea9fe/", "https://0251.0376.0251.0376/", "https://169.254.169.254./",
		"http://[::ffff:127.0.0.1]/", "https:s3.example.com", "https:///", "https://s3.example.com:99999/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkOutboundURL("url", s, true) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || u.Host == "" || u.Opaque != "" {
			t.Fatalf("accepted %q, which net/url does not read as an absolute URL: %v", s, err)
		}
		if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
			t.Fatalf("accepted %q, which has user info, a query or a fragment", s)
		}
		if !strings.HasSuffix(u.Path, "/") {
			t.Fatalf("accepted %q, whose path does not end with a slash", s)
		}
		host := u.Hostname()
		ip := net.ParseIP(host)
		switch u.Scheme {
		case "https":
		case "http":
			if !strings.EqualFold(host, "localhost") && (ip == nil || !ip.IsLoopback()) {
				t.Fatalf("accepted %q: http to a host that is not loopback", s)
			}
		default:
			t.Fatalf("accepted %q with scheme %q", s, u.Scheme)
		}
		if ip != nil {
			if v4 := ip.To4(); v4 == nil && len(ip) == net.IPv6len && bytes.HasPrefix(ip, net.ParseIP("64:ff9b::")[:12]) {
				ip = net.IP(ip[12:16])
			}
			if ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() ||
				ip.Equal(net.ParseIP("fd00:ec2::254")) || ip.Equal(net.ParseIP("100.100.100.200")) {
				t.Fatalf("accepted %q, whose address %s must never be contacted", s, ip)
			}
		} else if !strings.EqualFold(host, "localhost") {
			labels := strings.Split(strings.TrimSuffix(host, "."), ".")
			last := labels[len(labels)-1]
			if _, err := strconv.ParseUint(last, 0, 64); err == nil || strings.Contains(host, "%") {
				t.Fatalf("accepted %q, whose host %q a resolver could read as an address", s, host)
			}
		}
		if err := checkOutboundURL("url", u.String(), true); err != nil {
			t.Fatalf("accepted %q but not its own form %q: %v", s, u.String(), err)
		}
	})
}
