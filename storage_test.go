package jwtrotor

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

var updateFixtures = flag.Bool("update-fixtures", false, "rewrite testdata/storage-v<schemaVersion> from the current code")

// fixtureDir holds the entries a plugin of schema version v wrote; every
// version's fixtures stay checked in, and each is read by every later
// plugin.
func fixtureDir(v int) string { return fmt.Sprintf("testdata/storage-v%d", v) }

// fixtureVersions are the schema versions with checked-in fixtures.
var fixtureVersions = []int{1, 2, 3, 4}

// fixtureTime is the clock of the checked-in fixtures.
var fixtureTime = time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC)

// writeFixtures regenerates the storage fixtures of the current schema
// version: go test -run TestReadsOlderFixtures -update-fixtures, when a
// schema version is frozen. (Not a test of its own: it would skip in every
// ordinary run.)
func writeFixtures(t *testing.T) {
	dir := fixtureDir(schemaVersion)
	e := newEnvOn(t, &logical.InmemStorage{}, &fakeClock{now: fixtureTime})
	// The fixtures' keys are made afresh, not drawn from the test key pool:
	// a test that reads them draws from the pool, and a key it made could
	// otherwise be one the fixtures already hold.
	e.b.keys = generateKey
	fresh := func(alg string, bits int) crypto.Signer {
		g, err := generateKey(alg, bits)
		if err != nil {
			t.Fatal(err)
		}
		return g.Private
	}
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 300, "verifiers": "gateway"})
	e.mustWrite("keys/payments", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "20m", "verification_ttl": "2h"})
	e.mustWrite("keys/payments/rotate", map[string]any{"force": true})
	// A revoked key, kept as a tombstone (version 2 on).
	e.mustWrite("keys/payments/revoke", map[string]any{"kid": e.read("keys/payments").Data["pending_kid"]})
	e.mustWrite("roles/api", map[string]any{"key": "payments", "audiences": "https://api.example.com", "claims": map[string]any{"tier": "gold"}, "allowed_claims": "scope"})
	// An adopted issuer (version 3 on): the wrapping key, an imported key
	// under its own kid, a trusted key, and a revoked one in the history.
	e.mustWrite("keys/legacy/import", e.importData(fresh("RS256", 2048), map[string]any{"algorithm": "RS256", "kid": "legacy-2024", "rotation_period": "24h", "publish_lead": "20m", "verification_ttl": "2h"}))
	for _, kid := range []string{"legacy-2023", "legacy-2022"} {
		e.mustWrite("keys/legacy/trust", map[string]any{"jwk": publicJWKMap(t, fresh("ES256", 0).Public(), kid, "ES256", nil), "expires_at": fixtureTime.Add(3 * time.Hour).Unix()})
	}
	e.mustWrite("keys/legacy/revoke", map[string]any{"kid": "legacy-2022"})
	e.mustWrite("roles/legacy", map[string]any{"key": "legacy", "audiences": "https://legacy.example.com"})
	// Publishers (version 4 on): one with credentials of its own, one with
	// the ambient credentials config allows.
	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true})
	e.mustWrite("publishers/aws", map[string]any{"type": "s3", "bucket": "issuer-keys", "region": "eu-west-1",
		"access_key_id": "fixture-access-key-id", "secret_access_key": "fixture-secret-access-key", "session_token": "fixture-session-token",
		"ring": "payments", "prefix": "payments/", "public_url": "https://keys.example.com/payments/", "required": true})
	e.mustWrite("publishers/dav", map[string]any{"type": "webdav", "url": "http://127.0.0.1:8080/dav/", "jwks_path": "jwks.json"})
	e.clock.Advance(90 * time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	// Their upload states: one copy acknowledged, one failing.
	stores := withStores(e)
	e.publishPass()
	stores["http://127.0.0.1:8080/dav/"].set(reasonDenied, false)
	e.mustWrite("keys/payments/rotate", map[string]any{"force": true})
	e.publishPass()
	_ = os.RemoveAll(dir)
	for path, v := range dump(t, e.storage) {
		file := filepath.Join(dir, strings.ReplaceAll(path, "/", "__")+".json")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Invariant 10 (versioned storage): this plugin reads what every earlier
// version wrote, from checked-in fixtures, and keeps rotating and signing
// from there.
func TestReadsOlderFixtures(t *testing.T) {
	t.Parallel()
	if *updateFixtures {
		writeFixtures(t)
	}
	for _, v := range fixtureVersions {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { readsFixtures(t, v) })
	}
}

func readsFixtures(t *testing.T, v int) {
	s := loadFixtures(t, v)
	e := newEnvOn(t, s, &fakeClock{now: fixtureTime.Add(95 * time.Minute)})
	cfg := e.read("config").Data
	if cfg["issuer"] != "https://vault.example.com/v1/jwt" || cfg["jwks_max_age"] != int64(300) {
		t.Fatalf("config %v", cfg)
	}
	role := e.read("roles/api").Data
	if role["key"] != "payments" || role["claims"].(map[string]any)["tier"] != "gold" {
		t.Fatalf("role %v", role)
	}
	ring := e.read("keys/payments").Data
	if ring["algorithm"] != "ES256" || ring["active_kid"] == "" || ring["pending_kid"] == "" {
		t.Fatalf("ring %v", ring)
	}
	resp := e.mustWrite("sign/api", map[string]any{"claims": map[string]any{"scope": "pay"}})
	_, body, _ := e.jwks("jwks")
	if _, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if v >= 3 {
		readsAdoptedFixtures(t, e)
	}
	readsPublisherFixtures(t, e, v)
	// And the schedule goes on from the old entries.
	e.simulate(6*time.Hour, time.Minute, time.Minute, func(now time.Time) {
		e.mustWrite("sign/api", nil)
	})
}

// TestEveryEntryCarriesSchemaVersion: every kind of storage entry (config,
// clock, rings, roles, private halves, history, wrapping key, publishers)
// records the schema version.
func TestEveryEntryCarriesSchemaVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	e.mustWrite("publishers/p", s3Publisher(nil))
	e.read("wrapping_key")
	e.setupRing("gone", "EdDSA", nil)
	if _, err := e.do(logical.DeleteOperation, "keys/gone", map[string]any{"force": true}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	stored := dump(t, e.storage)
	for _, prefix := range []string{configPath, clockPath, ringPrefix, rolePrefix, privatePrefix, historyPath, wrappingPrefix, publisherPrefix} {
		found := false
		for path, v := range stored {
			if !strings.HasPrefix(path, prefix) {
				continue
			}
			found = true
			var m map[string]any
			if err := json.Unmarshal([]byte(v), &m); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if m["version"] != float64(schemaVersion) {
				t.Fatalf("%s has version %v", path, m["version"])
			}
		}
		if !found {
			t.Fatalf("no entry under %s", prefix)
		}
	}
}

// An entry from a newer plugin is refused with a clear error, never half
// understood.
func TestRefusesNewerSchema(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	raw := dump(t, e.storage)["rings/k"]
	raw = strings.Replace(raw, fmt.Sprintf(`"version":%d`, schemaVersion), fmt.Sprintf(`"version":%d`, schemaVersion+1), 1)
	if err := e.storage.Put(context.Background(), &logical.StorageEntry{Key: "rings/k", Value: []byte(raw)}); err != nil {
		t.Fatal(err)
	}
	_, err := e.restart().do(logical.ReadOperation, "keys/k", nil)
	if err == nil || !strings.Contains(err.Error(), "newer plugin") {
		t.Fatalf("want a schema version error, got %v", err)
	}
	// What an operator who downgraded sees names the versions and the fix.
	for _, want := range []string{
		fmt.Sprintf("schema version %d", schemaVersion+1),
		fmt.Sprintf("reads versions 1 to %d", schemaVersion),
		"-plugin-version", "snapshot",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal %q does not say %q", err, want)
		}
	}
}

// readsAdoptedFixtures checks what version 3 added: the imported key signs
// under its kid, the trusted key is served, the revoked one is remembered,
// and the stored wrapping key is the one wrapping_key answers with.
func readsAdoptedFixtures(t *testing.T, e *testEnv) {
	ring := e.read("keys/legacy").Data
	keys := ring["signing_keys"].([]map[string]any)
	trusted := ring["trusted_keys"].([]map[string]any)
	if ring["active_kid"] != "legacy-2024" || keys[0]["imported"] != true || len(trusted) != 1 || trusted[0]["kid"] != "legacy-2023" {
		t.Fatalf("ring legacy %v", ring)
	}
	tok := e.mustWrite("sign/legacy", nil)
	_, body, _ := e.jwks("jwks")
	if _, err := verifyJose(t, tok.Data["token"].(string), body, e.clock.Now()); err != nil || tok.Data["kid"] != "legacy-2024" {
		t.Fatalf("the imported key signs %v: %v", tok.Data["kid"], err)
	}
	if kids := kidsOf(t, body); !slices.Contains(kids, "legacy-2023") || slices.Contains(kids, "legacy-2022") {
		t.Fatalf("JWKS kids %v", kids)
	}
	resp, err := e.write("keys/legacy/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "P-256").Public(), "legacy-2022", "ES256", nil), "expires_at": e.clock.Now().Unix() + 600})
	expect400(t, resp, err, "kid:", "revoked")
	stored := &wrappingEntry{}
	if ok, err := getJSON(context.Background(), e.storage, wrappingPath, stored); !ok || err != nil {
		t.Fatalf("no stored wrapping key: %v", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(stored.PKCS8)
	if err != nil {
		t.Fatal(err)
	}
	if !e.wrappingPub().Equal(k.(*rsa.PrivateKey).Public()) {
		t.Fatal("wrapping_key does not answer with the stored key")
	}
}

// readsPublisherFixtures checks what version 4 added: the publishers, their
// credentials still stored and still unread, and the config's permission for
// ambient credentials; before version 4 there are none, and the permission is
// off.
func readsPublisherFixtures(t *testing.T, e *testEnv, v int) {
	list, err := e.do(logical.ListOperation, "publishers/", nil)
	if err != nil {
		t.Fatal(err)
	}
	ambient := e.read("config").Data["publishers_allow_ambient_credentials"]
	if v < 4 {
		if list.Data["keys"] != nil || ambient != false {
			t.Fatalf("a version %d store has publishers %v, ambient credentials %v", v, list.Data["keys"], ambient)
		}
		return
	}
	if fmt.Sprint(list.Data["keys"]) != "[aws dav]" || ambient != true {
		t.Fatalf("publishers %v, ambient credentials %v", list.Data["keys"], ambient)
	}
	aws := e.read("publishers/aws").Data
	if aws["bucket"] != "issuer-keys" || aws["ring"] != "payments" || aws["required"] != true || aws["secret_access_key_set"] != true || aws["session_token_set"] != true {
		t.Fatalf("publishers/aws %v", aws)
	}
	dav := e.read("publishers/dav").Data
	if dav["url"] != "http://127.0.0.1:8080/dav/" || dav["jwks_path"] != "jwks.json" || dav["ambient_credentials"] != true || dav["required"] != false {
		t.Fatalf("publishers/dav %v", dav)
	}
	stored := &publisherEntry{}
	if ok, err := getJSON(context.Background(), e.storage, publisherPrefix+"aws", stored); !ok || err != nil || stored.SecretAccessKey != "fixture-secret-access-key" {
		t.Fatalf("publishers/aws as stored: %v %v", ok, err)
	}
}

// loadFixtures returns an in-memory storage holding the golden entries of
// storage schema version v, as a plugin of that version wrote them.
func loadFixtures(t *testing.T, v int) *logical.InmemStorage {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(fixtureDir(v), "*.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("fixtures missing: %v %v", files, err)
	}
	s := &logical.InmemStorage{}
	for _, f := range files {
		v, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(f), ".json"), "__", "/")
		if err := s.Put(context.Background(), &logical.StorageEntry{Key: path, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}
