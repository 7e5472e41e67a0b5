package jwtrotor

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
)

// TestMetrics: the Prometheus exposition parses and counts signatures per
// kid, JWKS requests and 304s, rotations and active keys; a removed kid's
// series is dropped; without format=prometheus the figures come as JSON.
func TestMetrics(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
