package jwtrotor

import (
	"fmt"
	"testing"
	"time"
)

// peak is an upper bound of what a ring really publishes: a ring left to its
// schedule, with maintenance every minute, never publishes more keys at once
// than peak computed at its creation, and peak never exceeds the schedule's
// own projection (so the bounds refuse no write a plain schedule needs).
func TestPeakBoundsWhatTheScheduleChanges(t *testing.T) {
	cases := []struct{ period, lead, overlap string }{
		{"10s", "10s", "90s"},
		{"10s", "30s", "70s"},
		{"1m", "30s", "5m"},
		{"10m", "10m", "30m"},
		{"1h", "1h", "8h"},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-%s-%s", c.period, c.lead, c.overlap), func(t *testing.T) {
			e := newEnv(t)
			e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 1})
			e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": c.period, "publish_lead": c.lead, "verification_ttl": c.overlap})
			r := e.ring("k")
			want, _ := peak(r, e.clock.Now().Unix())
			if want > ringProjection(r) {
				t.Fatalf("peak %d is above the schedule's projection %d", want, ringProjection(r))
			}
			seen := 0
			period := time.Duration(r.RotationPeriod) * time.Second
			e.simulate(12*period+time.Hour, min(period/2, 20*time.Second), time.Minute, func(time.Time) {
				seen = max(seen, e.publishedCount("k"))
			})
			if seen > want {
				t.Fatalf("the ring published %d keys at once, above its peak %d", seen, want)
			}
			if seen < 3 {
				t.Fatalf("the ring published at most %d keys (the test would prove little)", seen)
			}
			t.Logf("peak %d, projection %d, most published %d", want, ringProjection(r), seen)
		})
	}
}
