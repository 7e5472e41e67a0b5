package jwtrotor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
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

// Tracking is bounded: the least recently seen client is forgotten first.
func TestVerifierTrackerBounded(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
