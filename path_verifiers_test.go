package jwtrotor

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests of path_verifiers.go: the verifiers report, its figures and its
// one-line summaries.

// TestVerifierReport: the verifiers report names stale declared verifiers
// (not ones that refetched), declared ones never seen, keeps anonymous
// fetchers apart from declared ones (an address in verifier_cidrs counts as
// declared), and gives each ring's pending-key coverage.
func TestVerifierReport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.mustWrite("config", map[string]any{"verifiers": "gateway,billing,ghost", "verifier_cidrs": "10.1.0.0/16"})
	gw := e.fetch("jwks", "gateway", "192.0.2.1:4000", "envoy", "")
	e.fetch("jwks", "billing", "192.0.2.2:4000", "jose", "")
	e.fetch("jwks/k", "", "10.1.2.3:5000", "keyfunc", "")
	e.mustWrite("keys/other", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	e.fetch("jwks", "", "203.0.113.9:1", "curl", "")
	// A new pending key appears; only the gateway refetches.
	e.clock.Advance(55 * time.Minute)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(10 * time.Minute)
	e.fetch("jwks/other", "billing", "198.51.100.66:1", "spoof", "")
	e.fetch("jwks", "gateway", "192.0.2.1:4000", "envoy", gw)
	e.fetch("jwks", "", "10.1.2.3:5000", "keyfunc", "")
	rep := e.read("verifiers").Data
	sum := rep["summary"].(map[string]any)
	stale := fmt.Sprint(sum["stale"])
	if !strings.Contains(stale, "billing") || strings.Contains(stale, "gateway") || strings.Contains(stale, "curl") {
		t.Fatalf("stale %s", stale)
	}
	if fmt.Sprint(sum["declared_not_seen"]) != "[ghost]" {
		t.Fatalf("never seen %v", sum["declared_not_seen"])
	}
	if len(rep["anonymous"].([]map[string]any)) != 1 || len(rep["declared"].([]map[string]any)) != 3 {
		t.Fatalf("anonymous %v declared %v", rep["anonymous"], rep["declared"])
	}
	ring := rep["rings"].(map[string]any)["k"].(map[string]any)
	// gateway and 10.1.2.3 hold the pending key; billing does not; ghost was never seen.
	if ring["fresh"] != 2 || ring["declared"] != 4 || ring["pending_coverage"] != 0.5 {
		t.Fatalf("ring coverage %v", ring)
	}
}

// The verifiers report reads well in vault read's table: coverage_summary
// and verifier_summary say in one line per mount, ring and verifier what
// summary, rings and declared say as nested objects.
func TestVerifierSummaryLines(t *testing.T) {
	t.Parallel()
	e := onlyGatewayFetches(t)
	e.fetch("jwks", "", "203.0.113.9:1", "curl/8", "")
	rep := e.read("verifiers").Data
	ring := e.ring("payments")
	now := e.clock.Now().UTC().Format(time.RFC3339)
	a, p := activeAndPending(ring.Keys, e.clock.Now().Unix())
	want := []string{
		"mount coverage=0.50 declared=2 fresh=1 stale=billing-api not_seen=billing-api tracked=2/10000 evicted=0 window=1h0m0s",
		fmt.Sprintf("ring=payments active_kid=%s pending_kid=%s coverage=0.50 declared=2 fresh=1 stale=billing-api", ring.Keys[a].KID, ring.Keys[p].KID),
	}
	if got := rep["coverage_summary"].([]string); !slices.Equal(got, want) {
		t.Errorf("coverage_summary\n got %q\nwant %q", got, want)
	}
	want = []string{
		"verifier=payments-gateway addr=192.0.2.10:4000 last_seen=" + now + " fetches=1 has_active=true has_pending=true stale=false counted=true",
		"verifier=billing-api last_seen=- stale=true counted=true",
		"anonymous fetchers=1 (never counted)",
	}
	if got := rep["verifier_summary"].([]string); !slices.Equal(got, want) {
		t.Errorf("verifier_summary\n got %q\nwant %q", got, want)
	}
}
