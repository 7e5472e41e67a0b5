package tests

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestSecuritySecrecy runs a Vault server at trace log level with two file
// audit devices (one HMACs values as Vault does by default, one logs them
// raw), drives every path of the plugin through its lifecycle with RSA, EC
// and EdDSA keys (including a plugin reload and maintenance passes), and then
// scans every HTTP response, the Vault log (which carries the plugin's log)
// and both audit logs for private key material.
//
// Two scans, so that neither depends on the other:
//   - the real private keys, read from the plugin's storage through the
//     sys/raw endpoint (enabled for this server only), in every encoding a
//     leak could take: PKCS#8 DER as base64, base64url and hex, and each
//     private scalar (RSA d, p, q, dp, dq, qi; EC d; the Ed25519 seed and
//     key) as base64url, base64, hex, decimal and raw bytes;
//   - material found without knowing the keys: JWK private members ("d",
//     "p", "q", "dp", "dq", "qi" with a value), PEM private key blocks, and
//     every base64, base64url or hex run that parses as a PKCS#8, PKCS#1 or
//     SEC 1 private key.
//
// The sys/raw reads are the test's own and are left out of the scan
// (responses and audit entries of sys/raw paths); a positive control shows
// that both scans find each kind of leak they look for.
func TestSecuritySecrecy(t *testing.T) {
	sec := startDedicated(t, testserver.DevOptions{LogLevel: "trace", Config: "raw_storage_endpoint = true\n"})
	auditHMAC := filepath.Join(sec.server.Dir, "audit.log")
	auditRaw := filepath.Join(sec.server.Dir, "audit-raw.log")
	sec.root.mustDo(t, http.MethodPut, "sys/audit/file", map[string]any{"type": "file", "options": map[string]any{"file_path": auditHMAC}})
	sec.root.mustDo(t, http.MethodPut, "sys/audit/raw", map[string]any{"type": "file", "options": map[string]any{"file_path": auditRaw, "log_raw": "true"}})

	m := sec.mount(t, "jwt-secrecy", map[string]any{"jwks_max_age": 5, "verifiers": "alpha,beta", "verifier_cidrs": "127.0.0.0/8"})
	mounts := sec.root.mustRead(t, "sys/mounts")
	mountInfo, _ := mounts.Data[m.path+"/"].(map[string]any)
	uuid, _ := mountInfo["uuid"].(string)
	if uuid == "" {
		t.Fatalf("no uuid for mount %s: %v", m.path, mountInfo)
	}
	h := &harvest{sec: sec, prefix: "sys/raw/logical/" + uuid + "/private/", keys: map[string]crypto.Signer{}, seen: map[string]bool{}}
	anon := &vaultClient{addr: sec.root.addr, hc: sec.root.hc}
	root, signer := sec.root, sec.signer
	p := m.p
	ok := func(resp *apiResponse) *apiResponse {
		t.Helper()
		if resp.Status >= 300 {
			t.Fatalf("status %d: %s", resp.Status, resp.Body)
		}
		return resp
	}
	refused := func(resp *apiResponse) {
		t.Helper()
		if resp.Status != http.StatusBadRequest {
			t.Fatalf("status %d, want 400: %s", resp.Status, resp.Body)
		}
	}

	// Rings of every key type; "fast" rotates every 10s so that maintenance
	// generates, activates and retires keys while the test runs.
	short := map[string]any{"rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"}
	rings := map[string]map[string]any{
		"rsa":   {"algorithm": "RS256", "rsa_bits": 2048},
		"pss":   {"algorithm": "PS384", "rsa_bits": 3072},
		"ec256": {"algorithm": "ES256"},
		"ec384": {"algorithm": "ES384"},
		"ec521": {"algorithm": "ES512"},
		"ed":    {"algorithm": "EdDSA"},
	}
	names := []string{"rsa", "pss", "ec256", "ec384", "ec521", "ed"}
	for _, name := range names {
		for k, v := range short {
			rings[name][k] = v
		}
		ok(root.write(t, p("keys/"+name), rings[name]))
		h.collect(t)
		ok(root.write(t, p("keys/"+name+"/rotate"), map[string]any{"force": true}))
		h.collect(t)
		ok(root.write(t, p("roles/"+name), map[string]any{
			"key": name, "audiences": "api,other", "ttl": "5m", "max_ttl": "1h",
			"claims": map[string]any{"tenant": "acme"}, "allowed_claims": "scope", "allowed_subjects": "svc-*",
		}))
	}
	ok(root.write(t, p("keys/fast"), map[string]any{"algorithm": "EdDSA", "rotation_period": "10s", "publish_lead": "10s", "verification_ttl": "70s"}))
	h.collect(t)
	ok(root.write(t, p("keys/fast/rotate"), map[string]any{"force": true}))
	h.collect(t)
	ok(root.write(t, p("roles/fast"), map[string]any{"key": "fast", "audiences": "api", "ttl": "5s", "max_ttl": "10s", "token_type": "at+jwt"}))
	ok(root.write(t, p("roles/templ"), map[string]any{"key": "ec256", "audiences": "api", "subject_template": "user/{{identity.entity.name}}/{{identity.entity.id}}"}))
	allRoles := append(append([]string{}, names...), "fast", "templ")

	// Imported keys, by the stock CLI through a proxy that records every
	// response: they sign, retire and are scanned for like the generated
	// ones, as is the mount's wrapping key; trusted keys are published.
	imported := importRecorded(t, sec, m, h, short)
	for _, name := range imported {
		ok(root.write(t, p("roles/"+name), map[string]any{
			"key": name, "audiences": "api,other", "ttl": "5m", "max_ttl": "1h",
			"claims": map[string]any{"tenant": "acme"}, "allowed_claims": "scope", "allowed_subjects": "svc-*",
		}))
	}
	names = append(names, imported...)
	allRoles = append(allRoles, imported...)

	exercise := func(round string) {
		t.Helper()
		for _, role := range allRoles {
			ok(signer.write(t, p("sign/"+role), nil))
			if role != "fast" && role != "templ" {
				ok(signer.write(t, p("sign/"+role), map[string]any{"claims": map[string]any{"scope": "read " + round}, "audience": "other", "subject": "svc-" + round, "ttl": "2m"}))
				ok(signer.write(t, p("sign/"+role), map[string]any{"claims": `{"scope":"text"}`}))
				ok(signer.write(t, p("sign/"+role), map[string]any{"batch_input": []any{
					map[string]any{}, map[string]any{"claims": map[string]any{"scope": "b"}}, map[string]any{"claims": map[string]any{"iss": "x"}}, "bad",
				}}))
				refused(signer.write(t, p("sign/"+role), map[string]any{"claims": map[string]any{"jti": "x"}}))
			}
		}
		ok(root.do(t, "LIST", p("keys"), nil))
		ok(root.do(t, "LIST", p("roles"), nil))
		ok(root.read(t, p("config")))
		for _, name := range append(append([]string{}, names...), "fast") {
			ok(root.read(t, p("keys/"+name)))
			rawFetch(t, sec, http.MethodGet, p("jwks/"+name), "", nil)
		}
		for _, role := range allRoles {
			ok(root.read(t, p("roles/"+role)))
		}
		for _, v := range []string{"alpha", "beta", "anonymous-" + round} {
			resp, _ := rawFetch(t, sec, http.MethodGet, p("jwks?verifier="+v), "", http.Header{"User-Agent": {"verifier/" + v}})
			rawFetch(t, sec, http.MethodGet, p("jwks?verifier="+v), "", http.Header{"If-None-Match": {resp.Header.Get("ETag")}})
		}
		rawFetch(t, sec, http.MethodHead, p("jwks"), "", nil)
		rawFetch(t, sec, http.MethodGet, p(".well-known/jwks.json"), "", nil)
		rawFetch(t, sec, http.MethodGet, p(".well-known/openid-configuration"), "", nil)
		ok(root.read(t, p("verifiers")))
		ok(root.read(t, p("metrics")))
		if resp, body := rawFetch(t, sec, http.MethodGet, p("metrics?format=prometheus"), rootToken, nil); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("jwt_rotor_")) {
			t.Fatalf("metrics?format=prometheus: status %d: %.200s", resp.StatusCode, body)
		}
		for _, help := range []string{"config", "keys/rsa", "keys/rsa/rotate", "roles/rsa", "sign/rsa", "jwks", "verifiers", "metrics"} {
			ok(root.read(t, p(help+"?help=1")))
		}
		// Refusals and mistakes: their messages are scanned too.
		refused(root.write(t, p("keys/bad"), map[string]any{"algorithm": "HS256"}))
		refused(root.write(t, p("keys/rsa/revoke"), map[string]any{"kid": "no-such-kid"}))
		refused(root.write(t, p("roles/bad"), map[string]any{"key": "rsa", "audiences": "a", "subject_template": "{{identity.entity.secret}}"}))
		refused(signer.write(t, p("sign/nope"), nil))
		if resp := anon.write(t, p("jwks"), map[string]any{"keys": []any{}}); resp.Status < 400 {
			t.Fatalf("POST jwks without a token: status %d", resp.Status)
		}
		if resp := anon.read(t, p("keys/rsa")); resp.Status != http.StatusForbidden {
			t.Fatalf("GET keys/rsa without a token: status %d", resp.Status)
		}
	}
	exercise("one")

	// Lifecycle operations, each followed by a harvest of private halves.
	ok(root.write(t, p("keys/rsa/rotate"), nil))
	h.collect(t)
	prev := str(t, ok(root.write(t, p("keys/ec256/rotate"), map[string]any{"force": true})).Data, "previous_kid")
	h.collect(t)
	if got := str(t, ok(root.write(t, p("keys/ec256/rollback"), nil)).Data, "active_kid"); got != prev {
		t.Fatalf("rollback made %s active, want %s", got, prev)
	}
	h.collect(t)
	pending := str(t, ok(root.read(t, p("keys/ed"))).Data, "pending_kid")
	ok(root.write(t, p("keys/ed/revoke"), map[string]any{"kid": pending}))
	h.collect(t)
	ok(root.write(t, p("keys/ec384/rotate"), map[string]any{"revoke_active": true}))
	h.collect(t)
	ok(root.write(t, p("keys/ec384/rotate"), map[string]any{"expected_active_kid": "not-the-active-kid"}))
	ok(root.write(t, p("keys/pss"), map[string]any{"algorithm": "ES256"}))
	h.collect(t)
	ok(root.write(t, p("keys/rsa"), map[string]any{"rsa_bits": 3072}))
	h.collect(t)
	ok(root.write(t, p("keys/rsa/rotate"), map[string]any{"force": true}))
	h.collect(t)
	// The imported RSA key retires: its private half goes.
	ok(root.write(t, p("keys/imprsa/rotate"), map[string]any{"force": true}))
	h.collect(t)
	exercise("two")

	// The plugin restarts and loads its private halves from storage.
	ok(root.do(t, http.MethodPut, "sys/plugins/reload/backend", map[string]any{"mounts": []string{m.path + "/"}}))
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp := signer.write(t, p("sign/rsa"), nil); resp.Status == http.StatusOK {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("signing did not resume after the plugin reload: %d %s", resp.Status, resp.Body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	exercise("three")

	// Deletes.
	ok(root.do(t, http.MethodDelete, p("roles/ec521"), nil))
	ok(root.do(t, http.MethodDelete, p("keys/ec521"), nil))
	h.collect(t)
	allRoles = without(allRoles, "ec521")
	names = without(names, "ec521")
	ok(root.do(t, http.MethodDelete, p("roles/templ"), nil))
	allRoles = without(allRoles, "templ")

	// Wait for maintenance (Vault calls it about once a minute) to generate
	// keys on the fast ring, signing and harvesting meanwhile.
	before := len(h.keys)
	deadline = time.Now().Add(150 * time.Second)
	for !logHas(t, sec.server.LogPath, "pending key generated", "ring=fast") {
		if time.Now().After(deadline) {
			t.Fatalf("no maintenance pass generated a key on ring fast within 150s")
		}
		ok(signer.write(t, p("sign/fast"), nil))
		rawFetch(t, sec, http.MethodGet, p("jwks"), "", nil)
		h.collect(t)
		time.Sleep(2 * time.Second)
	}
	h.collect(t)
	ok(root.do(t, http.MethodDelete, p("roles/pss"), nil))
	ok(root.do(t, http.MethodDelete, p("keys/pss?force=true"), nil))
	allRoles = without(allRoles, "pss")
	names = without(names, "pss")
	exercise("four")
	h.collect(t)
	t.Logf("harvested %d private keys through sys/raw (%d after maintenance began)", len(h.keys), len(h.keys)-before)

	// Every kid any read or JWKS showed was harvested: the oracle saw every key.
	for _, r := range sec.rec.all() {
		for _, kid := range kidPattern.FindAllSubmatch(r.data, -1) {
			if !h.seen[string(kid[1])] {
				t.Errorf("kid %s appeared in %s %s but its private half was never harvested", kid[1], r.method, r.path)
			}
		}
	}
	h.checkKinds(t)

	sec.server.Stop()

	sc := newScanner()
	for kid, k := range h.keys {
		sc.addKey(t, kid, k)
	}
	sc.positiveControl(t, h)

	var total int64
	findings := 0
	report := func(source string, data []byte) {
		total += int64(len(data))
		for _, f := range sc.scan(data) {
			findings++
			if findings <= 20 {
				t.Errorf("private key material in %s: %s", source, f)
			}
		}
	}
	var respBytes int64
	recs := sec.rec.all()
	for _, r := range recs {
		respBytes += int64(len(r.data))
		report(fmt.Sprintf("response to %s %s", r.method, r.path), r.data)
	}
	logData, err := os.ReadFile(sec.server.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	report("the Vault log", logData)
	hmacData, hmacSkipped := auditWithoutRaw(t, auditHMAC)
	report("the HMAC audit log", hmacData)
	rawData, rawSkipped := auditWithoutRaw(t, auditRaw)
	// The refused requests that carried key material in the clear (a plain
	// key to import, a private JWK to trust) are in the raw audit log by
	// design (log_raw); their answers are scanned, and the requests must be
	// there, so the scan saw what it claims to.
	rawData, refusedAnswers, nRefused := auditSplitRefused(t, rawData)
	if nRefused != 4 { // request and response entries of each
		t.Fatalf("%d raw audit entries of the refused key material requests, want 4", nRefused)
	}
	report("the raw audit log", rawData)
	report("the raw audit log's answers to refused key material", refusedAnswers)
	t.Logf("scanned %d bytes: %d responses (%d bytes; %d sys/raw responses left out), Vault log %d bytes, HMAC audit log %d bytes (%d sys/raw entries left out), raw audit log %d bytes (%d sys/raw entries left out); %d known-secret patterns from %d keys; findings: %d",
		total, len(recs), respBytes, sec.rec.skipped, len(logData), len(hmacData), hmacSkipped, len(rawData), rawSkipped, sc.patterns, len(h.keys), findings)
	if findings > 0 {
		t.Fatalf("%d findings", findings)
	}
	// Signed tokens are bearer credentials: they reach the caller and the
	// raw audit log, never the Vault log or the HMAC audit log.
	tokens := map[string]bool{}
	for _, r := range recs {
		for _, m := range tokenPattern.FindAllSubmatch(r.data, -1) {
			tokens[string(m[1])] = true
		}
	}
	for tok := range tokens {
		sig := []byte(tok[strings.LastIndex(tok, ".")+1:])
		if bytes.Contains(logData, sig) || bytes.Contains(hmacData, sig) {
			t.Errorf("a signed token appears in the Vault log or the HMAC audit log")
		}
	}
	if len(tokens) < 100 {
		t.Fatalf("only %d signed tokens seen", len(tokens))
	}
	t.Logf("%d signed tokens, none in the Vault log or the HMAC audit log", len(tokens))
	// The scan covered what it claims to: the log is at trace level and
	// holds the plugin's lines; the raw audit log holds signed tokens.
	if !bytes.Contains(logData, []byte("[TRACE]")) || !logHas(t, sec.server.LogPath, "rotation: ", "ring=rsa") {
		t.Fatalf("the Vault log lacks trace lines or the plugin's rotation lines")
	}
	if !bytes.Contains(rawData, []byte(`"token":"eyJ`)) || !bytes.Contains(hmacData, []byte("hmac-sha256:")) {
		t.Fatalf("the audit logs do not hold what they should (raw tokens, HMAC'd values)")
	}
}

// TestSecuritySecrecyPublisherCredentials guards the write-only publisher
// credentials: distinctive S3 access keys, secrets and a session token,
// WebDAV user names and passwords, Azure account keys and SAS tokens, and
// Cloud Storage service account keys (their private_key_id and a line of
// the private key) are written through the API (some wrong, so that
// uploads fail with 403 and 401, or a token endpoint's 400, and their
// failures are logged and reported; one replaced by an update; some in
// writes that are refused),
// and then no HTTP response (reads, lists, the verifier report with its
// last_error, both metrics formats, help, refusals), no line of the Vault
// log at trace level and no entry of the HMAC audit log holds any of them,
// in the clear or as an HTTP Basic header. The positive control: the raw
// audit log (log_raw) holds every one, so the scan finds what it looks for.
func TestSecuritySecrecyPublisherCredentials(t *testing.T) {
	sec := startDedicated(t, testserver.DevOptions{LogLevel: "trace"})
	auditHMAC := filepath.Join(sec.server.Dir, "audit.log")
	auditRaw := filepath.Join(sec.server.Dir, "audit-raw.log")
	sec.root.mustDo(t, http.MethodPut, "sys/audit/file", map[string]any{"type": "file", "options": map[string]any{"file_path": auditHMAC}})
	sec.root.mustDo(t, http.MethodPut, "sys/audit/raw", map[string]any{"type": "file", "options": map[string]any{"file_path": auditRaw, "log_raw": "true"}})
	s3 := testserver.S3(t)
	dav := testserver.WebDAV(t)
	az := testserver.Azure(t)
	gcs := startGCSStore(t)
	gcsDenied := newGCSTokenEndpoint(t)
	gcsDenied.refuse.Store(true)
	gcsWrongKey := gcsServiceAccountKey(t, "secrecy-gcs-wrong-key-Ur5t", gcsDenied.URL)
	gcsRefusedKey := strings.Replace(gcsServiceAccountKey(t, "secrecy-gcs-refused-key-Lp3w", gcsDenied.URL), `"service_account"`, `"external_account"`, 1)
	m := sec.mount(t, "jwt-pubsecrecy", map[string]any{"jwks_max_age": 5})
	sec.ring(t, m, "main", map[string]any{"algorithm": "ES256", "rotation_period": 3600, "verification_ttl": 7200})
	root := sec.root
	p := m.p

	secrets := map[string]string{
		"wrong access key id":             "AKIAPUBSECRECY7Q2XW4",
		"wrong secret access key":         "wrong-secret-Zt8vQ1mN4pL6rS0uW3yB",
		"session token":                   "FQoGZXIvYXdzEPubSecrecySessionTok9f8e7d6c5b4a",
		"replacing secret access key":     "replaced-secret-Hk2Jm5Np8Qr1St4Vw7Yz",
		"wrong secret of the store's key": "bad-secret-of-store-key-Jq4Wx7Zc0Vb3",
		"wrong webdav username":           "secrecy-user-4f7cQ",
		"wrong webdav password":           "secrecy-pass-Bx9Dq3Fs6Hv0",
		"refused access key id":           "AKIAREFUSEDSECRECY88",
		"refused session token":           "refused-session-token-K3m6P9s2",
		"refused webdav password":         "refused-dav-password-M4n7R0t3",
		"refused credential of the type":  "refused-cross-type-secret-Q8w2E5",
		"the store's access key id":       s3.AccessKey,
		"the store's secret access key":   s3.SecretKey,
		"the store's webdav password":     dav.Password,
		"wrong azure account key":         "c2VjcmVjeS1henVyZS13cm9uZy1rZXktUnQ1WWg4S3A=",
		"replacing azure account key":     "cmVwbGFjZWQtYXp1cmUta2V5LUdoN0prMUxtNE5w",
		"wrong azure SAS signature":       "secrecySASsigZp4Xc7Vb0Nm3",
		"refused azure account key":       "refused-azure-key-Wq3Ez6Rx9Tc!",
		"refused azure SAS signature":     "refusedSASsigInURLk5Jh8Gf2",
		"the store's azure account key":   az.AccountKey,
	}
	for what, key := range map[string]string{"wrong gcs key": gcsWrongKey, "the store's gcs key": gcs.key, "refused gcs key": gcsRefusedKey} {
		secrets[what+" id"], secrets[what+" private key"] = gcsKeyMarkers(t, key)
	}
	// The store's user name ("publisher") is a word every publisher log
	// line holds; its Basic header is scanned for instead.
	patterns := map[string]string{}
	for what, v := range secrets {
		patterns[what] = v
	}
	patterns["Basic header of the wrong webdav credentials"] = base64.StdEncoding.EncodeToString([]byte(secrets["wrong webdav username"] + ":" + secrets["wrong webdav password"]))
	patterns["Basic header of the store's webdav credentials"] = base64.StdEncoding.EncodeToString([]byte(dav.Username + ":" + dav.Password))

	s3Fields := func(extra map[string]any) map[string]any {
		f := map[string]any{"type": "s3", "bucket": s3.Bucket, "region": s3.Region, "endpoint": s3.Endpoint, "path_style": true}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	root.mustWrite(t, p("publishers/s3-wrong"), s3Fields(map[string]any{"access_key_id": secrets["wrong access key id"],
		"secret_access_key": secrets["wrong secret access key"], "session_token": secrets["session token"], "prefix": "wrong/"}))
	root.mustWrite(t, p("publishers/s3-badsecret"), s3Fields(map[string]any{"access_key_id": s3.AccessKey,
		"secret_access_key": secrets["wrong secret of the store's key"], "prefix": "badsecret/"}))
	root.mustWrite(t, p("publishers/dav-wrong"), map[string]any{"type": "webdav", "url": dav.URL, "prefix": "wrong/",
		"username": secrets["wrong webdav username"], "password": secrets["wrong webdav password"]})
	root.mustWrite(t, p("publishers/s3-ok"), s3Fields(map[string]any{"access_key_id": s3.AccessKey, "secret_access_key": s3.SecretKey,
		"prefix": "ok/", "public_url": s3.PublicURL("ok/")}))
	root.mustWrite(t, p("publishers/dav-ok"), map[string]any{"type": "webdav", "url": dav.URL, "prefix": "ok/",
		"username": dav.Username, "password": dav.Password, "public_url": dav.URL + "ok/"})
	azFields := func(extra map[string]any) map[string]any {
		f := map[string]any{"type": "azure_blob", "account_url": az.AccountURL, "container": az.Container}
		for k, v := range extra {
			f[k] = v
		}
		return f
	}
	root.mustWrite(t, p("publishers/az-wrong"), azFields(map[string]any{"account_name": az.AccountName,
		"account_key": secrets["wrong azure account key"], "prefix": "wrong/"}))
	root.mustWrite(t, p("publishers/az-sas-wrong"), azFields(map[string]any{"prefix": "saswrong/",
		"sas_token": "sv=2021-12-02&sr=c&sp=rcw&se=2099-01-01T00%3A00%3A00Z&sig=" + secrets["wrong azure SAS signature"]}))
	root.mustWrite(t, p("publishers/az-ok"), azFields(map[string]any{"account_name": az.AccountName, "account_key": az.AccountKey,
		"prefix": "ok/", "public_url": az.PublicURL("ok/")}))
	root.mustWrite(t, p("publishers/gcs-wrong"), map[string]any{"type": "gcs", "bucket": gcs.Bucket, "endpoint": gcs.Endpoint, "prefix": "wrong/", "credentials_json": gcsWrongKey})
	faultGCSPublisher(t, root, m, "gcs-ok", gcs, "ok/", nil)
	// An update replaces the secret; it stays wrong.
	root.mustWrite(t, p("publishers/s3-wrong"), map[string]any{"secret_access_key": secrets["replacing secret access key"]})
	root.mustWrite(t, p("publishers/az-wrong"), map[string]any{"account_key": secrets["replacing azure account key"]})
	refusals := []map[string]any{
		s3Fields(map[string]any{"access_key_id": secrets["refused access key id"]}),
		s3Fields(map[string]any{"session_token": secrets["refused session token"]}),
		{"type": "webdav", "url": dav.URL, "password": secrets["refused webdav password"]},
		{"type": "webdav", "url": dav.URL, "username": "u", "password": "p", "secret_access_key": secrets["refused credential of the type"]},
		azFields(map[string]any{"account_name": az.AccountName, "account_key": secrets["refused azure account key"]}),
		azFields(map[string]any{"account_url": az.AccountURL + "/?sv=2021-12-02&sig=" + secrets["refused azure SAS signature"], "sas_token": "sig=x"}),
		{"type": "gcs", "bucket": gcs.Bucket, "credentials_json": gcsRefusedKey},
		s3Fields(map[string]any{"access_key_id": "AKIAX", "secret_access_key": "x", "credentials_json": gcsRefusedKey}),
	}
	for i, body := range refusals {
		if resp := root.write(t, p(fmt.Sprintf("publishers/refused-%d", i)), body); resp.Status != http.StatusBadRequest {
			t.Fatalf("refusal %d: status %d, want 400: %s", i, resp.Status, resp.Body)
		}
	}

	// The store refuses an access key it does not know (with a session
	// token it did not issue) with a 400, a wrong secret with a 403, and
	// Apache a wrong password with a 401, Azurite a wrong account key or
	// SAS signature with a 403.
	for name, reason := range map[string]string{"s3-wrong": "rejected", "s3-badsecret": "denied", "dav-wrong": "denied",
		"az-wrong": "denied", "az-sas-wrong": "denied", "gcs-wrong": "denied"} {
		monWait(t, name+" failing, "+reason+", twice", 60*time.Second, func() (bool, string) {
			rep := faultPub(t, root, m, name)
			return rep["state"] == "failing" && rep["last_error_reason"] == reason && asInt(t, "failures", rep["failures"]) >= 2, fmt.Sprint(rep)
		})
	}
	for _, name := range []string{"s3-ok", "dav-ok", "az-ok", "gcs-ok"} {
		faultWaitState(t, root, m, name, "current", 60*time.Second)
	}
	for _, name := range []string{"s3-wrong", "s3-badsecret", "dav-wrong", "s3-ok", "dav-ok", "az-wrong", "az-sas-wrong", "az-ok", "gcs-wrong", "gcs-ok"} {
		root.mustRead(t, p("publishers/"+name))
	}
	root.mustDo(t, "LIST", p("publishers"), nil)
	if resp := root.read(t, p("publishers/s3-wrong?help=1")); resp.Status != http.StatusOK {
		t.Fatalf("publishers help: status %d", resp.Status)
	}
	root.mustRead(t, p("verifiers"))
	root.mustRead(t, p("metrics"))
	if resp, body := rawFetch(t, sec, http.MethodGet, p("metrics?format=prometheus"), rootToken, nil); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("jwt_rotor_publisher_failures_total")) {
		t.Fatalf("metrics?format=prometheus: status %d: %.200s", resp.StatusCode, body)
	}
	rawFetch(t, sec, http.MethodGet, p("jwks"), "", nil)
	root.mustDo(t, http.MethodDelete, p("publishers/s3-wrong"), nil)
	sec.server.Stop()

	logData, err := os.ReadFile(sec.server.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	hmacData, _ := auditWithoutRaw(t, auditHMAC)
	rawData, _ := auditWithoutRaw(t, auditRaw)
	findings := 0
	scan := func(source string, data []byte) {
		for what, v := range patterns {
			if bytes.Contains(data, []byte(v)) {
				findings++
				t.Errorf("%s holds %s", source, what)
			}
		}
	}
	recs := sec.rec.all()
	for _, r := range recs {
		scan(fmt.Sprintf("the response to %s %s", r.method, r.path), r.data)
	}
	scan("the Vault log", logData)
	scan("the HMAC audit log", hmacData)
	// Positive control: the raw audit log holds each credential written
	// (the Basic headers are built by the plugin, never sent to Vault).
	for what, v := range secrets {
		if !bytes.Contains(rawData, []byte(v)) {
			t.Errorf("positive control: the raw audit log lacks %s, so the scan could not have found it", what)
		}
	}
	// The scan covered what it claims to: trace lines, the failures logged
	// with their reason, and the reports that carried them.
	for _, want := range [][]string{{"publishing failed; retrying", "publisher=s3-wrong", "reason=rejected"}, {"publishing failed; retrying", "publisher=s3-badsecret", "reason=denied"}, {"publishing failed; retrying", "publisher=dav-wrong", "reason=denied"},
		{"publishing failed; retrying", "publisher=az-wrong", "reason=denied"}, {"publishing failed; retrying", "publisher=az-sas-wrong", "reason=denied"}, {"publishing failed; retrying", "publisher=gcs-wrong", "reason=denied"}} {
		if !logHas(t, sec.server.LogPath, want...) {
			t.Errorf("the Vault log has no line with %q", want)
		}
	}
	if !bytes.Contains(logData, []byte("[TRACE]")) {
		t.Errorf("the Vault log has no trace lines")
	}
	reported := false
	for _, r := range recs {
		reported = reported || (strings.HasSuffix(r.path, "/verifiers") && bytes.Contains(r.data, []byte("rejected (HTTP 400)")) && bytes.Contains(r.data, []byte("denied (HTTP 403)")) && bytes.Contains(r.data, []byte("denied (HTTP 401)")))
	}
	if !reported {
		t.Errorf("no verifier report carried the errors of the three failing publishers")
	}
	t.Logf("scanned %d responses, the Vault log (%d bytes) and the HMAC audit log (%d bytes) for %d credential patterns: %d findings; the raw audit log (%d bytes) holds all %d credentials",
		len(recs), len(logData), len(hmacData), len(patterns), findings, len(rawData), len(secrets))
}

func without(list []string, s string) []string {
	var out []string
	for _, e := range list {
		if e != s {
			out = append(out, e)
		}
	}
	return out
}

// rawFetch sends a request outside Vault's envelope handling, through the
// recording client, with token when not empty.
func rawFetch(t *testing.T, sec *dedicatedServer, method, path, token string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, sec.root.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	resp, err := sec.root.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
		t.Fatalf("%s %s: status %d: %s", method, path, resp.StatusCode, body)
	}
	return resp, body
}

var (
	kidPattern   = regexp.MustCompile(`"kid":"([A-Za-z0-9_-]{43})"`)
	tokenPattern = regexp.MustCompile(`"token":"(eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{40,})"`)
)

// logHas reports whether one line of the log holds every fragment.
func logHas(t *testing.T, path string, fragments ...string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		all := true
		for _, fr := range fragments {
			all = all && strings.Contains(line, fr)
		}
		if all {
			return true
		}
	}
	return false
}

// auditWithoutRaw returns an audit log without the entries of sys/raw
// requests (the test's own reads of storage), and how many it left out.
func auditWithoutRaw(t *testing.T, path string) ([]byte, int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	skipped := 0
	for _, e := range auditEntries(t, path, data) {
		if strings.HasPrefix(e.Request.Path, "sys/raw/") {
			skipped++
			continue
		}
		out.Write(e.line)
	}
	if out.Len() == 0 {
		t.Fatalf("%s is empty", path)
	}
	return out.Bytes(), skipped
}

// harvest collects the plugin's private keys from storage via sys/raw.
type harvest struct {
	sec    *dedicatedServer
	prefix string // sys/raw/logical/<mount uuid>/private/
	keys   map[string]crypto.Signer
	seen   map[string]bool
}

func (h *harvest) list(t *testing.T, path string) []string {
	t.Helper()
	resp := h.sec.root.do(t, "LIST", path, nil)
	switch resp.Status {
	case http.StatusNotFound:
		return nil
	case http.StatusOK:
		return stringList(resp.Data["keys"])
	}
	t.Fatalf("LIST %s: status %d: %s", path, resp.Status, resp.Body)
	return nil
}

func (h *harvest) collect(t *testing.T) {
	t.Helper()
	for _, ring := range h.list(t, h.prefix) {
		for _, kid := range h.list(t, h.prefix+ring) {
			if h.seen[kid] {
				continue
			}
			resp := h.sec.root.do(t, http.MethodGet, h.prefix+ring+kid, nil)
			if resp.Status == http.StatusNotFound {
				continue // deleted between the list and the read
			}
			value, _ := resp.Data["value"].(string)
			var entry struct {
				KID        string `json:"kid"`
				Thumbprint string `json:"thumbprint"`
				PKCS8      []byte `json:"pkcs8"`
			}
			// An imported key's half is stored under its thumbprint.
			if err := json.Unmarshal([]byte(value), &entry); err != nil || (entry.KID != kid && entry.Thumbprint != kid) {
				t.Fatalf("sys/raw %s%s: %v: %.100s", ring, kid, err, value)
			}
			k, err := x509.ParsePKCS8PrivateKey(entry.PKCS8)
			if err != nil {
				t.Fatalf("private half of %s: %v", kid, err)
			}
			h.keys[entry.KID] = k.(crypto.Signer)
			h.seen[kid], h.seen[entry.KID] = true, true
		}
	}
}

// checkKinds requires keys of every kind the test meant to create.
func (h *harvest) checkKinds(t *testing.T) {
	t.Helper()
	kinds := map[string]int{}
	for _, k := range h.keys {
		switch k := k.(type) {
		case *rsa.PrivateKey:
			kinds[fmt.Sprintf("RSA-%d", k.N.BitLen())]++
		case *ecdsa.PrivateKey:
			kinds["EC-"+k.Curve.Params().Name]++
		case ed25519.PrivateKey:
			kinds["Ed25519"]++
		}
	}
	for _, want := range []string{"RSA-2048", "RSA-3072", "EC-P-256", "EC-P-384", "EC-P-521", "Ed25519"} {
		if kinds[want] == 0 {
			t.Fatalf("no %s key harvested (kinds: %v)", want, kinds)
		}
	}
	t.Logf("private keys harvested by kind: %v", kinds)
}

// scanner finds private key material: known keys in many encodings, and
// any private key parseable from the data.
type scanner struct {
	byAnchor map[string][]pattern
	patterns int
}

type pattern struct {
	data []byte
	what string
}

const anchor = 16

func newScanner() *scanner { return &scanner{byAnchor: map[string][]pattern{}} }

func (s *scanner) add(what string, p []byte) {
	if len(p) < anchor {
		panic("pattern shorter than the anchor: " + what)
	}
	a := string(p[:anchor])
	s.byAnchor[a] = append(s.byAnchor[a], pattern{data: p, what: what})
	s.patterns++
}

// addText adds a text encoding whole and as 32-character windows every 48
// characters, so a partial or line-wrapped copy is found too.
func (s *scanner) addText(what, text string) {
	s.add(what, []byte(text))
	for i := 0; i+32 <= len(text); i += 48 {
		s.add(fmt.Sprintf("%s[%d:%d]", what, i, i+32), []byte(text[i:i+32]))
	}
}

func (s *scanner) addScalar(what string, b []byte) {
	s.addText(what+" base64url", base64.RawURLEncoding.EncodeToString(b))
	s.addText(what+" base64", base64.StdEncoding.EncodeToString(b))
	s.addText(what+" hex", hex.EncodeToString(b))
	s.addText(what+" HEX", strings.ToUpper(hex.EncodeToString(b)))
	s.addText(what+" decimal", new(big.Int).SetBytes(b).String())
	s.add(what+" raw bytes", b)
}

func (s *scanner) addKey(t *testing.T, kid string, k crypto.Signer) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	s.addText(kid+" PKCS#8 base64", base64.StdEncoding.EncodeToString(der))
	s.addText(kid+" PKCS#8 base64url", base64.RawURLEncoding.EncodeToString(der))
	s.addText(kid+" PKCS#8 hex", hex.EncodeToString(der))
	switch k := k.(type) {
	case *rsa.PrivateKey:
		for name, v := range map[string]*big.Int{"d": k.D, "p": k.Primes[0], "q": k.Primes[1], "dp": k.Precomputed.Dp, "dq": k.Precomputed.Dq, "qi": k.Precomputed.Qinv} {
			s.addScalar(kid+" RSA "+name, v.Bytes())
		}
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			t.Fatalf("%s: EC private scalar: %v", kid, err)
		}
		s.addScalar(kid+" EC d", d)
	case ed25519.PrivateKey:
		s.addScalar(kid+" Ed25519 seed", k.Seed())
		s.addScalar(kid+" Ed25519 key", k)
	default:
		t.Fatalf("key %s of type %T", kid, k)
	}
}

var (
	// A JWK private member with a value, also JSON-escaped inside a string.
	jwkPrivate = regexp.MustCompile(`\\*"(d|p|q|dp|dq|qi)\\*"\s*:\s*\\*"[A-Za-z0-9_\-+/=]{16,}`)
	base64Run  = regexp.MustCompile(`[A-Za-z0-9+/_-]{60,}={0,2}`)
	hexRun     = regexp.MustCompile(`[0-9a-fA-F]{96,}`)
)

// scan returns a description of every finding in data.
func (s *scanner) scan(data []byte) []string {
	var out []string
	for i := 0; i+anchor <= len(data); i++ {
		for _, p := range s.byAnchor[string(data[i:i+anchor])] {
			if bytes.HasPrefix(data[i:], p.data) {
				out = append(out, fmt.Sprintf("%s at byte %d", p.what, i))
			}
		}
	}
	for _, m := range jwkPrivate.FindAllIndex(data, -1) {
		out = append(out, fmt.Sprintf("JWK private member %.40s at byte %d", data[m[0]:m[1]], m[0]))
	}
	if i := bytes.Index(data, []byte("PRIVATE KEY")); i >= 0 {
		out = append(out, fmt.Sprintf("PEM private key marker at byte %d", i))
	}
	for _, m := range base64Run.FindAllIndex(data, -1) {
		if what := parsesAsPrivate(decodeBase64(data[m[0]:m[1]])); what != "" {
			out = append(out, fmt.Sprintf("base64 that parses as a %s private key at byte %d", what, m[0]))
		}
	}
	for _, m := range hexRun.FindAllIndex(data, -1) {
		if b, err := hex.DecodeString(string(data[m[0] : m[1]-(m[1]-m[0])%2])); err == nil {
			if what := parsesAsPrivate([][]byte{b}); what != "" {
				out = append(out, fmt.Sprintf("hex that parses as a %s private key at byte %d", what, m[0]))
			}
		}
	}
	sort.Strings(out)
	return out
}

func decodeBase64(run []byte) [][]byte {
	s := strings.TrimRight(string(run), "=")
	var out [][]byte
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			out = append(out, b)
		}
	}
	return out
}

func parsesAsPrivate(candidates [][]byte) string {
	for _, b := range candidates {
		if _, err := x509.ParsePKCS8PrivateKey(b); err == nil {
			return "PKCS#8"
		}
		if _, err := x509.ParsePKCS1PrivateKey(b); err == nil {
			return "PKCS#1"
		}
		if _, err := x509.ParseECPrivateKey(b); err == nil {
			return "SEC 1"
		}
	}
	return ""
}

// positiveControl shows that the scans find each kind of leak: a harvested
// key of each type written as PEM, as a private JWK, as base64 DER inside
// JSON, and as bare scalars, each found on its own.
func (s *scanner) positiveControl(t *testing.T, h *harvest) {
	t.Helper()
	byType := map[string]crypto.Signer{}
	for _, k := range h.keys {
		byType[fmt.Sprintf("%T", k)] = k
	}
	if len(byType) != 3 {
		t.Fatalf("positive control: key types %v", byType)
	}
	fresh := newScanner() // knows no key: only the generic scans
	for typ, k := range byType {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		jwk, err := json.Marshal(jose.JSONWebKey{Key: k, KeyID: "control", Algorithm: "x"})
		if err != nil {
			t.Fatal(err)
		}
		escaped, _ := json.Marshal(map[string]string{"msg": string(jwk)})
		leaks := map[string][]byte{
			"PEM":                    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
			"private JWK":            jwk,
			"private JWK in a log":   escaped,
			"base64 DER in JSON":     []byte(`{"value":"` + base64.StdEncoding.EncodeToString(der) + `"}`),
			"base64url DER":          []byte("key=" + base64.RawURLEncoding.EncodeToString(der) + " end"),
			"hex DER":                []byte("key=" + hex.EncodeToString(der)),
			"PEM body without armor": []byte(strings.Join(strings.Split(strings.TrimSpace(string(pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: der}))), "\n")[1:3], "\n")),
		}
		var scalar []byte
		switch k := k.(type) {
		case *rsa.PrivateKey:
			scalar = k.D.Bytes()
			leaks["decimal d"] = []byte(fmt.Sprintf("d=%s", k.D))
		case *ecdsa.PrivateKey:
			d, err := k.Bytes()
			if err != nil {
				t.Fatalf("EC private scalar: %v", err)
			}
			scalar = d
		case ed25519.PrivateKey:
			scalar = k.Seed()
		}
		leaks["raw scalar bytes"] = append([]byte("\x00\x01"), scalar...)
		leaks["hex scalar"] = []byte(hex.EncodeToString(scalar))
		for name, leak := range leaks {
			known := s.scan(leak)
			if len(known) == 0 {
				t.Fatalf("positive control: the known-key scan misses a %s %s leak", typ, name)
			}
			generic := fresh.scan(leak)
			switch name {
			case "PEM", "private JWK", "private JWK in a log", "base64 DER in JSON", "base64url DER", "hex DER":
				if len(generic) == 0 {
					t.Fatalf("positive control: the generic scan misses a %s %s leak", typ, name)
				}
			}
		}
	}
	// And it stays silent on public material.
	for _, k := range byType {
		pub, _ := json.Marshal(jose.JSONWebKey{Key: k.Public(), KeyID: "control", Algorithm: "x", Use: "sig"})
		if f := s.scan(pub); len(f) != 0 {
			t.Fatalf("positive control: a public JWK is reported: %v", f)
		}
	}
}

// importRecorded imports a key of each type with the stock vault transit import
// command, through a proxy whose responses the recorder keeps (the
// command's output too), harvests their private halves and the mount's
// wrapping key, trusts two public keys, and sends the two refusals that
// carry key material in the clear (to keys/refused-*). It returns the
// imported rings.
func importRecorded(t *testing.T, sec *dedicatedServer, m *mount, h *harvest, settings map[string]any) []string {
	t.Helper()
	target, err := url.Parse(sec.server.Addr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(target) }, Transport: sec.rec})
	defer proxy.Close()
	var args []string
	for k, v := range settings {
		args = append(args, fmt.Sprintf("%s=%v", k, v))
	}
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	imports := []struct {
		ring, alg, kid string
		key            crypto.Signer
	}{
		{"imprsa", "RS256", "legacy-rsa", rsaKey},
		{"impec", "ES384", "legacy-ec", ecKey},
		{"imped", "EdDSA", "", edKey},
	}
	var rings []string
	for _, imp := range imports {
		extra := append([]string{"algorithm=" + imp.alg}, args...)
		if imp.kid != "" {
			extra = append(extra, "kid="+imp.kid)
		}
		out, code := transitImport(t, proxy.URL, m.p("keys/"+imp.ring), keyFile(t, imp.key), extra...)
		sec.rec.note("vault transit import", m.p("keys/"+imp.ring), []byte(out))
		if code != 0 {
			t.Fatalf("vault transit import %s exited %d: %s", imp.ring, code, out)
		}
		h.collect(t)
		rings = append(rings, imp.ring)
	}
	for _, imp := range imports {
		if _, ok := h.keys[imp.kid]; imp.kid != "" && !ok {
			t.Fatalf("the imported key %s was not harvested", imp.kid)
		}
	}
	// The wrapping key's private half, read like the others.
	resp := sec.root.do(t, http.MethodGet, strings.TrimSuffix(h.prefix, "private/")+"wrapping/key", nil)
	var entry struct {
		PKCS8 []byte `json:"pkcs8"`
	}
	value, _ := resp.Data["value"].(string)
	if err := json.Unmarshal([]byte(value), &entry); err != nil {
		t.Fatalf("sys/raw wrapping/key: %v", err)
	}
	wk, err := x509.ParsePKCS8PrivateKey(entry.PKCS8)
	if err != nil {
		t.Fatalf("wrapping key: %v", err)
	}
	h.keys["wrapping-key"] = wk.(crypto.Signer)
	h.seen["wrapping-key"] = true

	// Trusted public keys, and the two refusals.
	trusted, _ := rsa.GenerateKey(rand.Reader, 2048)
	jwk, _ := json.Marshal(jose.JSONWebKey{Key: trusted.Public(), KeyID: "legacy-old-rsa", Algorithm: "RS256", Use: "sig"})
	sec.root.mustWrite(t, m.p("keys/imprsa/trust"), map[string]any{"jwk": string(jwk), "expires_at": time.Now().Unix() + 7200})
	exposed, _ := rsa.GenerateKey(rand.Reader, 2048)
	h.keys["refused-trust"] = exposed // scanned for everywhere but in the requests that carried it
	privJWK, _ := json.Marshal(jose.JSONWebKey{Key: exposed, KeyID: "refused", Algorithm: "RS256"})
	if r := sec.root.write(t, m.p("keys/refused-trust/trust"), map[string]any{"jwk": string(privJWK), "expires_at": time.Now().Unix() + 600}); r.Status != http.StatusBadRequest {
		t.Fatalf("a private JWK to trust: status %d", r.Status)
	}
	plain, _ := x509.MarshalPKCS8PrivateKey(exposed)
	if r := sec.root.write(t, m.p("keys/refused-import/import"), map[string]any{"ciphertext": base64.StdEncoding.EncodeToString(plain), "algorithm": "RS256"}); r.Status != http.StatusBadRequest {
		t.Fatalf("a plain key to import: status %d", r.Status)
	}
	return rings
}

// note records output that is not an HTTP response (a command's output).
func (r *recorder) note(method, path string, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.responses = append(r.responses, recorded{method: method, path: path, data: data})
}

// auditSplitRefused takes out of an audit log the entries of the
// refused requests that carried key material (paths keys/refused-*), and
// returns the rest, the answers of those entries alone, and how many.
func auditSplitRefused(t *testing.T, data []byte) (rest, answers []byte, n int) {
	t.Helper()
	var out, ans bytes.Buffer
	for _, e := range auditEntries(t, "the audit log", data) {
		if strings.Contains(e.Request.Path, "/keys/refused-") {
			n++
			ans.Write(e.Response)
			ans.WriteString(e.Error + "\n")
			continue
		}
		out.Write(e.line)
	}
	return out.Bytes(), ans.Bytes(), n
}

// auditEntry is one line of a file audit log: the fields the scans look
// at, and the line as written.
type auditEntry struct {
	Request struct {
		Path string `json:"path"`
	} `json:"request"`
	Response json.RawMessage `json:"response"`
	Error    string          `json:"error"`
	line     []byte
}

// auditEntries parses every non-empty line of an audit log (named by
// name in failures); a line that is not JSON fails the test.
func auditEntries(t *testing.T, name string, data []byte) []auditEntry {
	t.Helper()
	var entries []auditEntry
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e auditEntry
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatalf("%s: a line is not JSON: %v: %.200s", name, err, line)
		}
		e.line = line
		entries = append(entries, e)
	}
	return entries
}
