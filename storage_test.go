package jwtrotor

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

var updateFixtures = flag.Bool("update-fixtures", false, "rewrite testdata/storage-v1 from the current code")

const fixtureDir = "testdata/storage-v1"

// fixtureTime is the clock of the checked-in fixtures.
var fixtureTime = time.Date(2026, 1, 15, 9, 0, 0, 0, time.UTC)

// writeFixtures regenerates the checked-in storage fixtures: go test -run
// TestReadsVersion1Fixtures -update-fixtures, when a schema version is
// frozen. (Not a test of its own: it would skip in every ordinary run.)
func writeFixtures(t *testing.T) {
	e := newEnvOn(t, &logical.InmemStorage{}, &fakeClock{now: fixtureTime})
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 300, "verifiers": "gateway"})
	e.mustWrite("keys/payments", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "20m", "verification_ttl": "2h"})
	e.mustWrite("keys/payments/rotate", map[string]any{"force": true})
	e.mustWrite("roles/api", map[string]any{"key": "payments", "audiences": "https://api.example.com", "claims": map[string]any{"tier": "gold"}, "allowed_claims": "scope"})
	e.clock.Advance(90 * time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(fixtureDir)
	for path, v := range dump(t, e.storage) {
		file := filepath.Join(fixtureDir, strings.ReplaceAll(path, "/", "__")+".json")
		if err := os.MkdirAll(fixtureDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Invariant 10 (versioned storage): this plugin reads what version 1 wrote,
// from checked-in fixtures, and keeps rotating and signing from there.
func TestReadsVersion1Fixtures(t *testing.T) {
	if *updateFixtures {
		writeFixtures(t)
	}
	files, err := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
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
	// And the schedule goes on from the old entries.
	e.simulate(6*time.Hour, time.Minute, time.Minute, func(now time.Time) {
		e.mustWrite("sign/api", nil)
	})
}

// TestEveryEntryCarriesSchemaVersion: every kind of storage entry (config,
// clock, rings, roles, private halves) records the schema version.
func TestEveryEntryCarriesSchemaVersion(t *testing.T) {
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	e.clock.Advance(2 * time.Hour)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	stored := dump(t, e.storage)
	for _, prefix := range []string{configPath, clockPath, ringPrefix, rolePrefix, privatePrefix} {
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
}
