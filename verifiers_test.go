package jwtrotor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
)

// fetch is one JWKS fetch as a verifier makes it: with its id, address,
// User-Agent and the ETag it holds.
func (e *testEnv) fetch(path, verifier, addr, ua, etag string) string {
	e.t.Helper()
	data := map[string]any{}
	if verifier != "" {
		data["verifier"] = verifier
	}
	h := map[string][]string{"User-Agent": {ua}}
	if etag != "" {
		h["If-None-Match"] = []string{etag}
	}
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: path, Storage: e.storage, Data: data, Headers: h,
		Connection: &logical.Connection{RemoteAddr: addr},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Headers["ETag"][0]
}

// TestVerifierReport: the verifiers report names stale declared verifiers
// (not ones that refetched), declared ones never seen, keeps anonymous
// fetchers apart from declared ones (an address in verifier_cidrs counts as
// declared), and gives each ring's pending-key coverage.
func TestVerifierReport(t *testing.T) {
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

// Tracking is bounded: the least recently seen client is forgotten first.
func TestVerifierTrackerBounded(t *testing.T) {
	tr := newVerifierTracker()
	for i := 0; i < maxTrackedClients+500; i++ {
		tr.observe("", fmt.Sprintf("198.51.100.%d:%d", i%250, i), "ua", "", allScope, `"e"`, []string{"a"}, int64(i), false)
	}
	views, evicted := tr.snapshot(declaredBy(defaultConfig()))
	if len(views) != maxTrackedClients || evicted != 500 {
		t.Fatalf("%d tracked, %d evicted", len(views), evicted)
	}
	if views[len(views)-1].LastSeen != 500 {
		t.Fatalf("the oldest kept client was seen at %d", views[len(views)-1].LastSeen)
	}
}

// The gate delays an activation while declared coverage is low, at most
// max_activation_delay, and anonymous fetchers cannot hold it back.
func TestActivationGate(t *testing.T) {
	r, err := newEnv(t).write("keys/g", map[string]any{"min_verifier_coverage": 0.5, "rotation_period": "1h", "max_activation_delay": "2h"})
	expect400(t, r, err, "max_activation_delay", "rotation_period")

	run := func(freshGateway bool) (delay int64, note string) {
		e := newEnv(t)
		e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60, "verifiers": "gateway,billing"})
		e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h", "min_verifier_coverage": 1, "max_activation_delay": "30m"})
		e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		ring := e.ring("k")
		p := liveAfter(ring.Keys, activeIndex(ring.Keys, e.clock.Now().Unix()))
		origin, kid := ring.Keys[p].ActivateAt, ring.Keys[p].KID
		e.simulate(2*time.Hour, 30*time.Second, time.Minute, func(now time.Time) {
			e.fetch("jwks", "", "203.0.113.1:1", "anon", "") // anonymous, always fresh
			e.fetch("jwks", "billing", "192.0.2.2:1", "jose", "")
			if freshGateway || now.Unix() > origin+20*60 {
				e.fetch("jwks", "gateway", "192.0.2.1:1", "envoy", "")
			}
		})
		for _, k := range e.ring("k").Keys {
			if k.KID == kid {
				return k.ActivateAt - origin, k.GateNote
			}
		}
		t.Fatal("pending key vanished")
		return 0, ""
	}
	if d, _ := run(true); d != 0 {
		t.Fatalf("full coverage must not delay: %ds", d)
	}
	d, note := run(false)
	if d < 20*60 || d > 30*60 || !strings.Contains(note, "activated") {
		t.Fatalf("gateway fresh after 20m: delay %ds, note %q", d, note)
	}
}

// TestMetrics: the Prometheus exposition parses and counts signatures per
// kid, JWKS requests and 304s, rotations and active keys; a removed kid's
// series is dropped; without format=prometheus the figures come as JSON.
func TestMetrics(t *testing.T) {
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "1m", "max_ttl": "5m"})
	kid := e.mustWrite("sign/r", nil).Data["kid"].(string)
	e.mustWrite("sign/r", nil)
	etag := e.fetch("jwks", "", "192.0.2.1:1", "ua", "")
	e.fetch("jwks", "", "192.0.2.1:1", "ua", etag)
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})

	r, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: e.storage, Data: map[string]any{"format": "prometheus"}})
	if err != nil {
		t.Fatal(err)
	}
	body := r.Data[logical.HTTPRawBody].([]byte)
	var parser expfmt.TextParser
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("Prometheus text does not parse: %v\n%s", err, body)
	}
	value := func(name string, labels map[string]string) float64 {
		f := fams[name]
		if f == nil {
			t.Fatalf("no %s in\n%s", name, body)
		}
	next:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue next
				}
			}
			return metricValue(m)
		}
		t.Fatalf("no %s%v", name, labels)
		return 0
	}
	if v := value("jwt_rotor_tokens_signed_total", map[string]string{"ring": "k", "kid": kid}); v != 2 {
		t.Fatalf("signed %v", v)
	}
	if value("jwt_rotor_jwks_requests_total", map[string]string{"document": "all"}) != 2 || value("jwt_rotor_jwks_not_modified_total", map[string]string{"document": "all"}) != 1 {
		t.Fatal("JWKS request counts")
	}
	if value("jwt_rotor_rotations_total", map[string]string{"ring": "k"}) != 2 || value("jwt_rotor_active_keys", map[string]string{"ring": "k"}) != 1 {
		t.Fatal("rotation counts")
	}
	// The removed kid's series is dropped.
	e.simulate(time.Hour, time.Minute, time.Minute, func(time.Time) {})
	r, _ = e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "metrics", Storage: e.storage, Data: map[string]any{"format": "prometheus"}})
	if strings.Contains(string(r.Data[logical.HTTPRawBody].([]byte)), kid) {
		t.Fatal("series of a removed kid survived")
	}
	// JSON otherwise.
	j := e.read("metrics").Data
	if _, ok := j["jwt_rotor_published_keys"]; !ok {
		t.Fatalf("JSON metrics %v", j)
	}
}

// Every activation is counted once: scheduled ones by maintenance (even
// several per tick), manual ones by the operation, never both.
func TestRotationCounting(t *testing.T) {
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 5})
	e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": "10s", "publish_lead": "10s", "verification_ttl": "70s"})
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	start := e.clock.Now().Unix()
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	e.simulate(5*time.Minute, time.Second, time.Minute, func(time.Time) {})
	activations := 0
	for _, k := range e.ring("k").Keys {
		if k.ActivateAt > start && k.ActivateAt <= e.clock.Now().Unix() {
			activations++
		}
	}
	// Keys removed during the run were counted too: count from the metric.
	counted := func(reason string) float64 {
		for _, s := range e.read("metrics").Data["jwt_rotor_rotations_total"].([]map[string]any) {
			if l := s["labels"].(map[string]string); l["ring"] == "k" && l["reason"] == reason {
				return s["value"].(float64)
			}
		}
		return 0
	}
	if got := counted("scheduled"); got != 30 {
		t.Fatalf("30 scheduled activations in 5 minutes of a 10s ring, counted %v (%d still in the ring)", got, activations)
	}
	// A manual rotation counts as manual only.
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	e.simulate(2*time.Minute, time.Second, time.Minute, func(time.Time) {})
	if counted("manual, forced") != 2 || counted("scheduled") != 30+12 {
		t.Fatalf("manual %v scheduled %v", counted("manual, forced"), counted("scheduled"))
	}
}
