package jwtrotor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

// Maintenance writes only where Vault allows writes: on a performance
// standby, a DR secondary, and a performance secondary's replicated mounts it
// does nothing (the primary's writes arrive by replication); on the primary,
// a performance secondary's local mount, and a node that replicates nothing
// it stocks keys. Modelled on transit's auto-rotation test across
// replication states.
func TestMaintenanceAcrossReplicationStates(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		state  consts.ReplicationState
		local  bool
		writes bool
	}{
		{"no replication", 0, false, true},
		{"performance primary", consts.ReplicationPerformancePrimary, false, true},
		{"DR primary", consts.ReplicationDRPrimary, false, true},
		{"performance secondary", consts.ReplicationPerformanceSecondary, false, false},
		{"performance secondary, local mount", consts.ReplicationPerformanceSecondary, true, true},
		{"performance standby", consts.ReplicationPerformanceStandby, false, false},
		{"DR secondary", consts.ReplicationDRSecondary, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &logical.InmemStorage{}
			clock := &fakeClock{now: testStart}
			// Set up the ring on a node that may write.
			e := newEnvOn(t, s, clock)
			e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
			before := dump(t, s)
			keys := len(e.ring("k").Keys)
			clock.Advance(time.Hour)

			conf := logical.TestBackendConfig()
			conf.StorageView = s
			conf.Logger = hclog.NewNullLogger()
			conf.System = &logical.StaticSystemView{ReplicationStateVal: tc.state, LocalMountVal: tc.local}
			b := newBackend(clock)
			if err := b.Setup(context.Background(), conf); err != nil {
				t.Fatal(err)
			}
			if err := b.Backend.PeriodicFunc(context.Background(), &logical.Request{Storage: s, Operation: logical.RollbackOperation}); err != nil {
				t.Fatalf("maintenance: %v", err)
			}
			after := dump(t, s)
			changed := len(before) != len(after)
			for k, v := range before {
				changed = changed || after[k] != v
			}
			if changed != tc.writes {
				t.Fatalf("maintenance wrote storage: %v, want %v", changed, tc.writes)
			}
			if tc.writes {
				r, err := readRing(context.Background(), s, "k")
				if err != nil {
					t.Fatal(err)
				}
				if n := len(r.Keys); n <= keys-1 {
					t.Fatalf("an hour later maintenance left %d keys (from %d): it did not stock", n, keys)
				}
				if r.Keys[len(r.Keys)-1].ActivateAt <= clock.Now().Unix()+5*60 {
					t.Fatal("the pipeline is not stocked a lead ahead")
				}
			}
		})
	}
}

// counter reads a counter of the metrics endpoint for one ring label (a
// counter never incremented has no sample).
func (e *testEnv) counter(metric, ring string) float64 {
	e.t.Helper()
	samples, _ := e.read("metrics").Data[metric].([]map[string]any)
	for _, s := range samples {
		if s["labels"].(map[string]string)["ring"] == ring {
			return s["value"].(float64)
		}
	}
	return 0
}

func (e *testEnv) failures(ring string) float64 {
	return e.counter("jwt_rotor_maintenance_failures_total", ring)
}

// A ring whose maintenance fails is counted under its name and the pass
// fails; a pass that succeeds counts nothing, neither for a ring nor for the
// mount (retrying deletes, sweeping deleted rings).
func TestMaintenanceCountsAFailedRing(t *testing.T) {
	t.Parallel()
	s := &faultStorage{Storage: &logical.InmemStorage{}}
	e := newEnvOn(t, s, &fakeClock{now: testStart})
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if k, m := e.failures("k"), e.failures(mountWide); k != 0 || m != 0 {
		t.Fatalf("a pass that succeeded counted failures: %v of ring k, %v of the mount", k, m)
	}
	// An hour later the ring needs new keys, and no write succeeds.
	e.clock.Advance(time.Hour)
	s.mu.Lock()
	s.failPuts = true
	s.mu.Unlock()
	if err := e.maintain(); !errors.Is(err, errInjected) {
		t.Fatalf("a pass whose ring could not be written returned %v", err)
	}
	if n := e.failures("k"); n != 1 {
		t.Fatalf("a failed pass over ring k counted %v failures of it, want 1", n)
	}
}

// A pass with nothing to do writes no ring: only the clock's high-water
// mark moves.
func TestMaintenanceWithNothingToDoWritesNoRing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	before := dump(t, e.storage)
	e.clock.Advance(time.Second)
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	after := dump(t, e.storage)
	delete(before, clockPath)
	delete(after, clockPath)
	sameStorage(t, before, after)
}

// listFailingStorage fails the first List of one prefix.
type listFailingStorage struct {
	logical.Storage
	mu     sync.Mutex
	prefix string
	failed bool
}

func (s *listFailingStorage) List(ctx context.Context, p string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == s.prefix && !s.failed {
		s.failed = true
		return nil, errInjected
	}
	return s.Storage.List(ctx, p)
}

// A private half no ring entry claims (a crash between the private write
// and the ring write, or between deleting a ring and its keys) is deleted by
// maintenance; if listing the private halves under that ring's name fails,
// the pass fails and the next one sweeps.
func TestMaintenanceRetriesAFailedOrphanSweep(t *testing.T) {
	t.Parallel()
	for _, ring := range []string{"k", "gone"} {
		s := &listFailingStorage{Storage: &logical.InmemStorage{}, prefix: privatePrefix + ring + "/"}
		e := newEnvOn(t, s, &fakeClock{now: testStart})
		e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
		orphan := privatePath(ring, "orphan")
		if err := s.Put(context.Background(), &logical.StorageEntry{Key: orphan, Value: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if err := e.maintain(); !errors.Is(err, errInjected) {
			t.Fatalf("%s: a pass that could not list the private halves returned %v", ring, err)
		}
		if e, _ := s.Get(context.Background(), orphan); e == nil {
			t.Fatalf("%s: the orphan went without a list", ring)
		}
		if err := e.maintain(); err != nil {
			t.Fatal(err)
		}
		if e, _ := s.Get(context.Background(), orphan); e != nil {
			t.Fatalf("%s: the pass after a failed sweep left the orphan private half", ring)
		}
	}
}

// logged returns the kid of every log line with message msg.
func (e *testEnv) logged(msg string) []string {
	e.t.Helper()
	var kids []string
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			e.t.Fatalf("log line %q: %v", line, err)
		}
		if l["@message"] == msg {
			kid, _ := l["kid"].(string)
			kids = append(kids, kid)
		}
	}
	return kids
}

// Maintenance logs each key it removes from the JWKS once, naming that
// key, and no key the ring still holds.
func TestMaintenanceLogsTheKeysItRemoves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
	seen := map[string]bool{}
	e.simulate(time.Hour, time.Minute, time.Minute, func(time.Time) {
		for _, k := range e.ring("k").Keys {
			seen[k.KID] = true
		}
	})
	removed := e.logged("key removed from the JWKS")
	still := map[string]bool{}
	for _, k := range e.ring("k").Keys {
		still[k.KID] = true
	}
	want := 0
	for kid := range seen {
		if !still[kid] {
			want++
		}
	}
	if want == 0 || len(removed) != want {
		t.Fatalf("%d keys left the ring in an hour; %d removals logged: %v", want, len(removed), removed)
	}
	for _, kid := range removed {
		if still[kid] || !seen[kid] {
			t.Fatalf("logged the removal of %q, which is still in the ring or never was", kid)
		}
	}
}

// gatedRing makes ring k gated on the declared verifiers (by default one,
// gateway, that never fetches), force-rotates it at testStart, and returns a
// reader of its pending key, due an hour later.
func gatedRing(t *testing.T, verifiers ...string) (*testEnv, func() signingKey) {
	if len(verifiers) == 0 {
		verifiers = []string{"gateway"}
	}
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60, "verifiers": strings.Join(verifiers, ",")})
	e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h", "min_verifier_coverage": 1, "max_activation_delay": "30m"})
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	ring := e.ring("k")
	p := liveAfter(ring.Keys, activeIndex(ring.Keys, e.clock.Now().Unix()))
	kid := ring.Keys[p].KID
	return e, func() signingKey {
		for _, k := range e.ring("k").Keys {
			if k.KID == kid {
				return k
			}
		}
		t.Fatal("pending key vanished")
		return signingKey{}
	}
}

// tickUntilDelayed runs maintenance every minute until the gate delays the
// pending key, then for more minutes, and returns when the first delaying
// pass ran.
func tickUntilDelayed(t *testing.T, e *testEnv, pending func() signingKey, more int) int64 {
	var at int64
	for n := -1; n < more; {
		if at == 0 && e.clock.Now().Sub(testStart) > 2*time.Hour {
			t.Fatal("the gate never delayed the key")
		}
		e.clock.Advance(time.Minute)
		if err := e.maintain(); err != nil {
			t.Fatal(err)
		}
		if at != 0 {
			n++
		} else if pending().GateOrigin != 0 {
			at, n = e.clock.Now().Unix(), 0
		}
	}
	return at
}

// The gate decides on an activation due within its horizon, the horizon's
// end included, so the decision is stored a full horizon ahead.
func TestGateDecidesAHorizonAhead(t *testing.T) {
	t.Parallel()
	e, pending := gatedRing(t)
	origin := pending().ActivateAt
	if (origin-testStart.Unix())%60 != 0 {
		t.Fatalf("the key is due at %d, off the minute ticks from %d", origin, testStart.Unix())
	}
	if at := tickUntilDelayed(t, e, pending, 0); at != origin-gateHorizonSeconds {
		t.Fatalf("the gate first delayed the key %ds before it was due, want %ds", origin-at, gateHorizonSeconds)
	}
}

// Switching the gate off (min_verifier_coverage 0) while it delays a key
// leaves the delayed activation where the last pass put it: maintenance no
// longer rewrites it, in either direction.
func TestGateOffLeavesADelayedActivation(t *testing.T) {
	t.Parallel()
	e, pending := gatedRing(t)
	// Five more ticks: the key is delayed past its original time.
	tickUntilDelayed(t, e, pending, 5)
	delayed := pending()
	e.mustWrite("keys/k", map[string]any{"min_verifier_coverage": 0})
	// Within the gate's horizon of the delayed time, and past the original.
	e.clock.Advance(30 * time.Second)
	now := e.clock.Now().Unix()
	if delayed.ActivateAt <= now+1 || delayed.ActivateAt > now+gateHorizonSeconds || delayed.GateOrigin >= now {
		t.Fatalf("now %d: the key is due at %d (origin %d), not delayed past the next second within the horizon", now, delayed.ActivateAt, delayed.GateOrigin)
	}
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	if k := pending(); k.ActivateAt != delayed.ActivateAt || k.GateOrigin != delayed.GateOrigin {
		t.Fatalf("with the gate off the key moved from %d to %d (origin %d to %d)", delayed.ActivateAt, k.ActivateAt, delayed.GateOrigin, k.GateOrigin)
	}
}

// A delay moves the activation to just past the gate's horizon, says by
// how much from the original time, and is counted.
func TestGateDelayNote(t *testing.T) {
	t.Parallel()
	e, pending := gatedRing(t)
	at := tickUntilDelayed(t, e, pending, 0)
	k := pending()
	if k.ActivateAt != at+gateHorizonSeconds+1 {
		t.Fatalf("delayed at %d to %d, want %d", at, k.ActivateAt, at+gateHorizonSeconds+1)
	}
	want := fmt.Sprintf("activation delayed %ds (at most 1800s): coverage 0.00 is below min_verifier_coverage 1.00; stale: gateway", k.ActivateAt-k.GateOrigin)
	if k.GateNote != want {
		t.Fatalf("gate note %q, want %q", k.GateNote, want)
	}
	if n := e.counter("jwt_rotor_activation_gate_delays_total", "k"); n != 1 {
		t.Fatalf("one delay counted %v times", n)
	}
}

// The note of a delay lists at most ten stale verifiers, then how many more.
func TestGateNoteListsTenStale(t *testing.T) {
	t.Parallel()
	for _, n := range []int{10, 11} {
		var ids []string
		for i := range n {
			ids = append(ids, fmt.Sprintf("v%02d", i))
		}
		e, pending := gatedRing(t, ids...)
		tickUntilDelayed(t, e, pending, 0)
		note := pending().GateNote
		listed := strings.Join(ids[:10], ", ")
		if n > 10 {
			listed += fmt.Sprintf(", and %d more", n-10)
		}
		if !strings.HasSuffix(note, "stale: "+listed) {
			t.Fatalf("%d stale verifiers: note %q, want it to end with %q", n, note, listed)
		}
	}
}

// Once coverage arrives the delayed key activates at the next second, and
// the note says how late that is; a release that would not move the
// activation (it is due in a second anyway) changes nothing.
func TestGateRelease(t *testing.T) {
	t.Parallel()
	for _, lastSecond := range []bool{false, true} {
		e, pending := gatedRing(t)
		tickUntilDelayed(t, e, pending, 3)
		delayed := pending()
		if lastSecond {
			e.clock.Advance(time.Duration(delayed.ActivateAt-1-e.clock.Now().Unix()) * time.Second)
		} else {
			e.clock.Advance(time.Second)
		}
		e.fetch("jwks", "gateway", "192.0.2.1:1", "envoy", "")
		before := dump(t, e.storage)
		if err := e.maintain(); err != nil {
			t.Fatal(err)
		}
		k, now := pending(), e.clock.Now().Unix()
		if lastSecond {
			after := dump(t, e.storage)
			delete(before, clockPath)
			delete(after, clockPath)
			sameStorage(t, before, after)
			continue
		}
		if k.ActivateAt != now+1 || k.GateOrigin != delayed.GateOrigin {
			t.Fatalf("released at %d: due at %d (origin %d), want %d (origin %d)", now, k.ActivateAt, k.GateOrigin, now+1, delayed.GateOrigin)
		}
		want := fmt.Sprintf("activated %ds after its scheduled time, once 1 of 1 declared verifiers held it", k.ActivateAt-k.GateOrigin)
		if k.GateNote != want {
			t.Fatalf("gate note %q, want %q", k.GateNote, want)
		}
	}
}

// clipNote keeps a note of maxGateNote bytes whole and cuts a longer one to
// exactly maxGateNote bytes of valid UTF-8 ending in "...".
func TestClipNote(t *testing.T) {
	t.Parallel()
	at := strings.Repeat("a", maxGateNote)
	if got := clipNote(at); got != at {
		t.Fatalf("a note of %d bytes was clipped to %d", maxGateNote, len(got))
	}
	past := at + "b"
	if got := clipNote(past); got != at[:maxGateNote-3]+"..." {
		t.Fatalf("a note of %d bytes clipped to %d bytes ending %q", len(past), len(got), got[len(got)-5:])
	}
	// A two-byte rune across the cut is dropped whole.
	split := strings.Repeat("a", maxGateNote-4) + "é" + "bbbb"
	if got := clipNote(split); got != split[:maxGateNote-4]+"..." {
		t.Fatalf("a rune across the cut left %q at the end", got[len(got)-6:])
	}
}
