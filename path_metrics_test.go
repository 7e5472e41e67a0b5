package jwtrotor

import (
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/prometheus/common/expfmt"
)

// Tests of path_metrics.go: the metrics read, in the Prometheus text format
// or as JSON.

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

// The JSON answer gives a counter's, a gauge's and an untyped metric's
// value; a kind without one value (a histogram) reads 0.
func TestMetricValue(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	for _, c := range []struct {
		name string
		m    *dto.Metric
		want float64
	}{
		{"counter", &dto.Metric{Counter: &dto.Counter{Value: f(3)}}, 3},
		{"gauge", &dto.Metric{Gauge: &dto.Gauge{Value: f(-2.5)}}, -2.5},
		{"untyped", &dto.Metric{Untyped: &dto.Untyped{Value: f(7)}}, 7},
		{"histogram", &dto.Metric{Histogram: &dto.Histogram{SampleSum: f(9)}}, 0},
	} {
		if got := metricValue(c.m); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
