package jwtrotor

import (
	"testing"
	"time"
)

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
