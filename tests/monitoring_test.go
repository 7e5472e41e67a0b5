package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"mime"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestMonitoringStaleVerifiersGateAndMetrics runs real verifier processes
// against a real Vault and checks what the plugin reports about them:
//
//   - alpha and bravo poll the JWKS every 2s and 7s with ?verifier=<id>;
//   - delta fetched once, before the rings existed, and never refreshes;
//   - charlie is declared but only starts polling (every 20s) once the
//     activation gate is holding a key back;
//   - ghost is declared and never fetches;
//   - one anonymous poller (no id, its own User-Agent) polls every 3s.
//
// Two rings use the activation gate. "wait" needs 3 of the 5 declared
// verifiers to hold its pending key: the gate delays the key until charlie
// fetches it, then lets it activate. "capped" needs all 5, which never
// happens (delta is stale, ghost is absent): the key activates when
// max_activation_delay has passed. Vault calls the plugin's periodic function
// about once a minute, and the gate decides at those ticks, so the
// scenario takes about three minutes. Then the Prometheus text exposition is
// parsed with the Prometheus parser and its figures are compared with what
// the pollers and the signer did.
func TestMonitoringStaleVerifiersGateAndMetrics(t *testing.T) {
	t.Parallel()
	const (
		maxAge = 5
		// period: the first maintenance tick after the rings are created
		// (at most a minute later) falls before the scheduled activation,
		// so the gate decides before it, and the delay leaves room for one
		// more tick after charlie starts, so "wait" is released by
		// coverage, not by the cap.
		period   = 80
		maxDelay = 80
		// Long enough that no key leaves the JWKS during the test, so
		// every kid that signed keeps its series.
		verifyTTL = 300
		ttl       = 30
		maxTTL    = 60
	)
	declared := []string{"alpha", "bravo", "charlie", "delta", "ghost"}
	pollerBin := monBuildPoller(t)
	m := newMount(t, "monitor", map[string]any{"jwks_max_age": maxAge, "verifiers": declared})
	jwksURL := env.root.url(m.p("jwks"))

	// delta fetches once, before any ring exists, and keeps that copy.
	delta := monStartPoller(t, pollerBin, jwksURL, "delta", "delta", "mon-delta/1.0 (fetches once)", 0)
	alpha := monStartPoller(t, pollerBin, jwksURL, "alpha", "alpha", "mon-alpha/1.0 (every 2s)", 2*time.Second)
	bravo := monStartPoller(t, pollerBin, jwksURL, "bravo", "bravo", "mon-bravo/1.0 (every 7s)", 7*time.Second)
	anon := monStartPoller(t, pollerBin, jwksURL, "anonymous", "", "mon-anonymous/1.0 (every 3s)", 3*time.Second)
	monWait(t, "delta's only fetch", 20*time.Second, func() (bool, string) {
		f, ok := delta.last(t)
		return ok && f.Status == http.StatusOK, fmt.Sprintf("%+v", f)
	})
	if f, _ := delta.last(t); len(f.Kids) != 0 {
		t.Fatalf("delta fetched before any ring exists and got kids %v", f.Kids)
	}

	signedBy := map[string]map[string]int{} // ring -> kid -> tokens
	monSign := func(ringName string) string {
		t.Helper()
		s := sign(t, m, ringName, map[string]any{})
		if signedBy[ringName] == nil {
			signedBy[ringName] = map[string]int{}
		}
		signedBy[ringName][s.Kid]++
		return s.Kid
	}

	type gated struct {
		name     string
		coverage float64
		k1, k2   string
		origin   int64 // K2's activate_at before the gate moved it
	}
	rings := []*gated{{name: "wait", coverage: 0.55}, {name: "capped", coverage: 1}}
	for _, g := range rings {
		g.k1 = createRing(t, m, g.name, map[string]any{
			"algorithm":             "ES256",
			"rotation_period":       period,
			"verification_ttl":      verifyTTL,
			"min_verifier_coverage": g.coverage,
			"max_activation_delay":  maxDelay,
		})
		createRole(t, m, g.name, map[string]any{
			"key": g.name, "audiences": []string{apiAudience}, "ttl": ttl, "max_ttl": maxTTL,
		})
		r := readRing(t, m, g.name)
		k2, ok := r.nextPending()
		if !ok {
			t.Fatalf("ring %s: no pending key after the forced rotation: %+v", g.name, r.SigningKeys)
		}
		g.k2, g.origin = k2.Kid, k2.ActivateAt
		// By Vault's own timestamps, not by how long the set-up took: the
		// forced key signs for one rotation_period, then K2 takes over.
		if k1, _ := r.byKid(g.k1); k1.State != "active" || g.origin != k1.ActivateAt+period || k1.RetireAt != g.origin {
			t.Fatalf("ring %s: forced key %+v and pending key %s activating at %d; want K2 to activate one rotation_period (%ds) after the forced key, when it retires", g.name, k1, g.k2, g.origin, period)
		}
		for range 2 {
			if kid := monSign(g.name); kid != g.k1 {
				t.Fatalf("ring %s signed with %s, want the forced key %s", g.name, kid, g.k1)
			}
		}
	}
	t0 := time.Now()
	t.Logf("rings created: wait K2 %s due at +%ds, capped K2 %s due at +%ds",
		rings[0].k2, rings[0].origin-t0.Unix(), rings[1].k2, rings[1].origin-t0.Unix())

	// The fast pollers pick the new keys up within their interval.
	for _, p := range []*monPoller{alpha, bravo, anon} {
		monWait(t, p.name+" holding both pending keys", 20*time.Second, func() (bool, string) {
			f, _ := p.last(t)
			return slices.Contains(f.Kids, rings[0].k2) && slices.Contains(f.Kids, rings[1].k2), fmt.Sprint(f.Kids)
		})
	}

	// The gate must move both activations back before they are due:
	// coverage is 2 of 5 (alpha, bravo) for both rings.
	decided := map[string]time.Time{}
	for _, g := range rings {
		monWait(t, "the gate's decision on ring "+g.name, time.Until(time.Unix(g.origin, 0)), func() (bool, string) {
			k := monGateKey(t, m, g.name, g.k2)
			return k.activateAt > g.origin, fmt.Sprintf("%+v", k)
		})
		decided[g.name] = time.Now()
		k := monGateKey(t, m, g.name, g.k2)
		for _, who := range []string{"charlie", "delta", "ghost"} {
			if !strings.Contains(k.gateNote, who) {
				t.Errorf("ring %s: gate_note %q does not name the stale verifier %s", g.name, k.gateNote, who)
			}
		}
		if strings.Contains(k.gateNote, "mon-anonymous") {
			t.Errorf("ring %s: gate_note %q names the anonymous poller, which must never count", g.name, k.gateNote)
		}
		if !monWarnsAbout(t, m, g.name, g.k2) {
			t.Errorf("ring %s: reading the ring gives no warning about the held key %s", g.name, g.k2)
		}
		if k.activateAt > g.origin+maxDelay {
			t.Errorf("ring %s: gate moved %s to %d, past its scheduled %d plus max_activation_delay %d", g.name, g.k2, k.activateAt, g.origin, maxDelay)
		}
		t.Logf("ring %s: gate decided at +%s: activate_at %d -> %d (%q)", g.name,
			decided[g.name].Sub(t0).Round(time.Second), g.origin, k.activateAt, k.gateNote)
	}

	pollers := []*monPoller{alpha, bravo, delta, anon}
	t.Run("report before charlie", func(t *testing.T) {
		rep, logs := monStableReport(t, m, pollers)
		monCheckReport(t, rep, logs, declared, m, []string{"wait", "capped"})
		sum := rep.summary
		if got := stringList(sum["declared_not_seen"]); !slices.Equal(got, []string{"charlie", "ghost"}) {
			t.Errorf("declared_not_seen = %v, want [charlie ghost]", got)
		}
		if got := monSortedStrings(sum["stale"]); !slices.Equal(got, []string{"charlie", "delta", "ghost"}) {
			t.Errorf("stale = %v, want [charlie delta ghost]: alpha and bravo hold every current key, charlie and ghost were not seen", got)
		}
		monWantFloat(t, "summary.coverage", sum["coverage"], 2.0/5)
		for _, name := range []string{"wait", "capped"} {
			r := rep.ring(t, name)
			monWantFloat(t, name+" pending_coverage", r["pending_coverage"], 2.0/5)
			if got := monSortedStrings(r["stale"]); !slices.Equal(got, []string{"charlie", "delta", "ghost"}) {
				t.Errorf("ring %s stale = %v, want [charlie delta ghost]", name, got)
			}
		}
	})

	// Both activations are now past their scheduled time and held back.
	for _, g := range rings {
		monSleepUntil(time.Unix(g.origin+1, 0))
		k := monGateKey(t, m, g.name, g.k2)
		if k.state != "pending" {
			t.Fatalf("ring %s: key %s is %s at its scheduled activation + 1s; the gate should hold it (%+v)", g.name, g.k2, k.state, k)
		}
		if kid := monSign(g.name); kid != g.k1 {
			t.Fatalf("ring %s signed with %s after the scheduled activation, want %s while the gate holds %s", g.name, kid, g.k1, g.k2)
		}
	}

	// charlie starts: the wait ring's coverage becomes 3 of 5.
	charlie := monStartPoller(t, pollerBin, jwksURL, "charlie", "charlie", "mon-charlie/1.0 (every 20s)", 20*time.Second)
	monWait(t, "charlie's first fetch", 20*time.Second, func() (bool, string) {
		f, ok := charlie.last(t)
		return ok && f.Status == http.StatusOK, fmt.Sprintf("%+v", f)
	})
	pollers = append(pollers, charlie)
	cf, _ := charlie.last(t)
	charlieAt := cf.Start / 1000
	t.Logf("charlie's first fetch at +%ds", charlieAt-t0.Unix())

	wait, capped := rings[0], rings[1]
	var waitAt int64
	monWait(t, "ring wait's key "+wait.k2+" to activate", time.Until(time.Unix(wait.origin+maxDelay+30, 0)), func() (bool, string) {
		k := monGateKey(t, m, wait.name, wait.k2)
		waitAt = k.activateAt
		return k.state == "active", fmt.Sprintf("%+v", k)
	})
	k := monGateKey(t, m, wait.name, wait.k2)
	t.Logf("ring wait: %s activated at +%ds, %ds after its scheduled time (%q)", wait.k2, waitAt-t0.Unix(), waitAt-wait.origin, k.gateNote)
	if waitAt <= wait.origin {
		t.Errorf("ring wait: %s activated at %d, not after its scheduled %d: the gate did not hold it", wait.k2, waitAt, wait.origin)
	}
	if waitAt <= charlieAt {
		t.Errorf("ring wait: %s activated at %d, before charlie first held it (%d)", wait.k2, waitAt, charlieAt)
	}
	if waitAt >= wait.origin+maxDelay {
		t.Errorf("ring wait: %s activated at %d = scheduled %d + %ds: released by the cap, not by charlie's fetch at %d", wait.k2, waitAt, wait.origin, waitAt-wait.origin, charlieAt)
	}
	if want := "once 3 of 5 declared verifiers held it"; !strings.Contains(k.gateNote, want) {
		t.Errorf("ring wait: gate_note %q, want it to say %q", k.gateNote, want)
	}
	if kid := monSign(wait.name); kid != wait.k2 {
		t.Errorf("ring wait signs with %s after %s activated", kid, wait.k2)
	}
	// Coverage 3 of 5 is below capped's minimum 1: its key stays held
	// (the gate only pushes it later) until the cap, whenever this runs.
	// Vault's own record and the token's iat say which side of the cap
	// this is, not the test's clock.
	k = monGateKey(t, m, capped.name, capped.k2)
	switch {
	case k.state == "pending" && !strings.Contains(k.gateNote, "delayed"):
		t.Errorf("ring capped: %s is pending with gate_note %q, want it held by the gate", capped.k2, k.gateNote)
	case k.state == "active" && k.activateAt != capped.origin+maxDelay:
		t.Errorf("ring capped: %s activated at %d, before its cap %d; coverage 3 of 5 is below its minimum 1", capped.k2, k.activateAt, capped.origin+maxDelay)
	}
	s := sign(t, m, capped.name, map[string]any{})
	signedBy[capped.name][s.Kid]++
	if s.IssuedAt < k.activateAt && s.Kid != capped.k1 {
		t.Errorf("ring capped signs with %s at %d while %s is held until %d; want %s", s.Kid, s.IssuedAt, capped.k2, k.activateAt, capped.k1)
	}

	var cappedAt int64
	monWait(t, "ring capped's key "+capped.k2+" to activate", time.Until(time.Unix(capped.origin+maxDelay+30, 0)), func() (bool, string) {
		k := monGateKey(t, m, capped.name, capped.k2)
		cappedAt = k.activateAt
		return k.state == "active", fmt.Sprintf("%+v", k)
	})
	k = monGateKey(t, m, capped.name, capped.k2)
	t.Logf("ring capped: %s activated at +%ds, %ds after its scheduled time (%q)", capped.k2, cappedAt-t0.Unix(), cappedAt-capped.origin, k.gateNote)
	if cappedAt != capped.origin+maxDelay {
		t.Errorf("ring capped: %s activated at %d, want its scheduled %d + max_activation_delay %d = %d", capped.k2, cappedAt, capped.origin, maxDelay, capped.origin+maxDelay)
	}
	if want := fmt.Sprintf("delayed %ds (at most %ds)", maxDelay, maxDelay); !strings.Contains(k.gateNote, want) {
		t.Errorf("ring capped: gate_note %q, want it to say %q", k.gateNote, want)
	}
	if kid := monSign(capped.name); kid != capped.k2 {
		t.Errorf("ring capped signs with %s after %s activated", kid, capped.k2)
	}

	// The rest of each schedule followed the real activation.
	for _, g := range rings {
		r := readRing(t, m, g.name)
		monCheckShiftedSchedule(t, r, g.name, g.k1, g.k2, period, verifyTTL, maxDelay)
	}

	// Scheduled rotations are counted by the first maintenance pass after
	// them; wait for it, then stop the pollers so the figures stand still.
	monWait(t, "the scheduled rotations in the metrics", 90*time.Second, func() (bool, string) {
		fams := monScrape(t, m, http.Header{"X-Vault-Token": {rootToken}})
		w, _ := monValue(fams, "jwt_rotor_rotations_total", map[string]string{"ring": "wait", "reason": "scheduled"})
		c, _ := monValue(fams, "jwt_rotor_rotations_total", map[string]string{"ring": "capped", "reason": "scheduled"})
		return w >= 1 && c >= 1, fmt.Sprintf("wait %v, capped %v", w, c)
	})
	for _, p := range pollers {
		p.stop(t)
	}

	t.Run("report after", func(t *testing.T) {
		rep, logs := monStableReport(t, m, pollers)
		monCheckReport(t, rep, logs, declared, m, []string{"wait", "capped"})
		if got := stringList(rep.summary["declared_not_seen"]); !slices.Equal(got, []string{"ghost"}) {
			t.Errorf("declared_not_seen = %v, want [ghost]", got)
		}
		if got := monSortedStrings(rep.summary["stale"]); !slices.Contains(got, "delta") {
			t.Errorf("stale = %v, want delta in it", got)
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		monCheckMetrics(t, m, pollers, signedBy, []string{"wait", "capped"})
	})
}

// monGateState is one key of a ring read, with its gate note.
type monGateState struct {
	state      string
	activateAt int64
	gateNote   string
}

func monGateKey(t testing.TB, m *mount, ringName, kid string) monGateState {
	t.Helper()
	resp := env.root.mustRead(t, m.p("keys/"+ringName))
	items, _ := resp.Data["signing_keys"].([]any)
	for _, it := range items {
		d, _ := it.(map[string]any)
		if d["kid"] == kid {
			note, _ := d["gate_note"].(string)
			return monGateState{state: str(t, d, "state"), activateAt: integer(t, d, "activate_at"), gateNote: note}
		}
	}
	t.Fatalf("ring %s has no key %s: %s", ringName, kid, resp.Body)
	return monGateState{}
}

// monWarnsAbout reports whether a read of the ring warns about kid.
func monWarnsAbout(t testing.TB, m *mount, ringName, kid string) bool {
	t.Helper()
	resp := env.root.mustRead(t, m.p("keys/"+ringName))
	for _, w := range resp.Warnings {
		if strings.Contains(w, kid) {
			return true
		}
	}
	return false
}

// monCheckShiftedSchedule checks that the keys around a gated activation
// still chain: the outgoing key retires when its successor really activated
// and leaves the JWKS verification_ttl later, and the next key follows one
// period after, never before its lead.
func monCheckShiftedSchedule(t *testing.T, r ring, name, k1, k2 string, period, verifyTTL, maxDelay int64) {
	t.Helper()
	one, _ := r.byKid(k1)
	two, _ := r.byKid(k2)
	if one.RetireAt != two.ActivateAt {
		t.Errorf("ring %s: %s retires at %d, its successor %s activated at %d", name, k1, one.RetireAt, k2, two.ActivateAt)
	}
	if one.RemoveAt != one.RetireAt+verifyTTL {
		t.Errorf("ring %s: %s remove_at %d, want retire_at %d + verification_ttl %d", name, k1, one.RemoveAt, one.RetireAt, verifyTTL)
	}
	lead := asInt(t, "publish_lead", r.Data["publish_lead"])
	var next signingKey
	for _, k := range r.SigningKeys {
		if k.ActivateAt > two.ActivateAt && k.RevokedAt == 0 && (next.Kid == "" || k.ActivateAt < next.ActivateAt) {
			next = k
		}
	}
	if next.Kid == "" {
		t.Errorf("ring %s: no key scheduled after %s: %+v", name, k2, r.SigningKeys)
		return
	}
	// One period after, or later if the gate is already holding it too.
	if due := max(two.ActivateAt+period, next.PublishAt+lead); next.ActivateAt < due || next.ActivateAt > due+maxDelay {
		t.Errorf("ring %s: next key %s activates at %d, want %s's %d + rotation_period %d (+ at most max_activation_delay %d)", name, next.Kid, next.ActivateAt, k2, two.ActivateAt, period, maxDelay)
	}
	if two.RetireAt != next.ActivateAt {
		t.Errorf("ring %s: %s retires at %d, its successor %s activates at %d", name, k2, two.RetireAt, next.Kid, next.ActivateAt)
	}
}

// monReport is a read of `verifiers`.
type monReport struct {
	data      map[string]any
	summary   map[string]any
	declared  []map[string]any
	anonymous []map[string]any
}

func (r monReport) ring(t testing.TB, name string) map[string]any {
	t.Helper()
	rings, _ := r.data["rings"].(map[string]any)
	v, ok := rings[name].(map[string]any)
	if !ok {
		t.Fatalf("verifiers: no ring %q in %v", name, r.data["rings"])
	}
	return v
}

func monEntries(v any) []map[string]any {
	items, _ := v.([]any)
	var out []map[string]any
	for _, it := range items {
		if d, ok := it.(map[string]any); ok {
			out = append(out, d)
		}
	}
	return out
}

// monStableReport reads `verifiers` together with every poller's log, and
// retries until no poller fetched while the report was read, so the two
// describe the same moment.
func monStableReport(t *testing.T, m *mount, pollers []*monPoller) (monReport, map[*monPoller][]monFetch) {
	t.Helper()
	for range 20 {
		before := map[*monPoller][]monFetch{}
		for _, p := range pollers {
			before[p] = p.fetches(t)
		}
		resp := env.root.mustRead(t, m.p("verifiers"))
		same := true
		for _, p := range pollers {
			if len(p.fetches(t)) != len(before[p]) {
				same = false
			}
		}
		if same {
			return monReport{
				data:      resp.Data,
				summary:   resp.Data["summary"].(map[string]any),
				declared:  monEntries(resp.Data["declared"]),
				anonymous: monEntries(resp.Data["anonymous"]),
			}, before
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatal("could not read the verifiers report while no poller was fetching")
	return monReport{}, nil
}

// monCheckReport compares the report with what the pollers hold: the
// current active and pending key of every ring against each poller's last
// fetch.
func monCheckReport(t *testing.T, rep monReport, logs map[*monPoller][]monFetch, declared []string, m *mount, ringNames []string) {
	t.Helper()
	current := map[string][2]string{}
	for _, name := range ringNames {
		r := rep.ring(t, name)
		rr := readRing(t, m, name)
		active := rr.inState("active")
		pending, _ := rr.nextPending()
		if len(active) != 1 || str(t, r, "active_kid") != active[0].Kid || str(t, r, "pending_kid") != pending.Kid {
			t.Fatalf("verifiers ring %s: active %v pending %v; the ring reads %+v", name, r["active_kid"], r["pending_kid"], rr.SigningKeys)
		}
		current[name] = [2]string{active[0].Kid, pending.Kid}
	}
	holds := func(f monFetch, kid string) bool { return slices.Contains(f.Kids, kid) }

	wantStale := []string{}
	seen := map[string]bool{}
	entries := map[string]map[string]any{}
	for _, e := range rep.declared {
		entries["declared/"+fmt.Sprint(e["verifier"])] = e
	}
	for _, e := range rep.anonymous {
		entries["anonymous/"+fmt.Sprint(e["user_agent"])] = e
	}
	if len(rep.anonymous) != 1 {
		t.Errorf("anonymous lists %d fetchers, want the one anonymous poller: %v", len(rep.anonymous), rep.anonymous)
	}
	for p, fs := range logs {
		if len(fs) == 0 {
			continue
		}
		last := fs[len(fs)-1]
		hasActive, hasPending := true, true
		for _, pair := range current {
			hasActive = hasActive && holds(last, pair[0])
			hasPending = hasPending && holds(last, pair[1])
		}
		key := "declared/" + p.verifier
		if p.verifier == "" {
			key = "anonymous/" + p.ua
		}
		e, ok := entries[key]
		if !ok {
			t.Errorf("poller %s (%s) is not in the report: declared %v anonymous %v", p.name, key, rep.declared, rep.anonymous)
			continue
		}
		if got := fmt.Sprint(e["user_agent"]); got != p.ua {
			t.Errorf("%s: user_agent %q, want %q", p.name, got, p.ua)
		}
		if got := fmt.Sprint(e["remote_addr"]); !strings.HasPrefix(got, "127.0.0.1") {
			t.Errorf("%s: remote_addr %q, want the loopback address it fetched from", p.name, got)
		}
		if got := asInt(t, "fetches", e["fetches"]); got != int64(len(fs)) {
			t.Errorf("%s: fetches %d, the poller made %d", p.name, got, len(fs))
		}
		if got := asInt(t, "first_seen", e["first_seen"]); got < fs[0].Start/1000 || got > fs[0].End/1000+1 {
			t.Errorf("%s: first_seen %d, its first fetch ran %d..%d ms", p.name, got, fs[0].Start, fs[0].End)
		}
		if got := asInt(t, "last_seen", e["last_seen"]); got < last.Start/1000 || got > last.End/1000+1 {
			t.Errorf("%s: last_seen %d, its last fetch ran %d..%d ms", p.name, got, last.Start, last.End)
		}
		if got := fmt.Sprint(e["etag_served"]); got != last.ETag {
			t.Errorf("%s: etag_served %q, the poller holds %q", p.name, got, last.ETag)
		}
		presented := ""
		if len(fs) > 1 {
			presented = fs[len(fs)-2].ETag
		}
		if got := fmt.Sprint(e["etag_presented"]); got != presented {
			t.Errorf("%s: etag_presented %q, the poller sent %q", p.name, got, presented)
		}
		if e["has_active"] != hasActive || e["has_pending"] != hasPending {
			t.Errorf("%s: has_active %v has_pending %v, its last JWKS %v against current keys %v gives %v %v",
				p.name, e["has_active"], e["has_pending"], last.Kids, current, hasActive, hasPending)
		}
		stale := !(hasActive && hasPending)
		if e["stale"] != stale {
			t.Errorf("%s: stale %v, want %v", p.name, e["stale"], stale)
		}
		if p.verifier == "" {
			continue
		}
		seen[p.verifier] = true
		if stale {
			wantStale = append(wantStale, p.verifier)
		}
	}
	var notSeen []string
	for _, id := range declared {
		if !seen[id] {
			notSeen = append(notSeen, id)
		}
	}
	// A declared id not seen is stale too (api.md#stale-and-coverage).
	wantStale = append(wantStale, notSeen...)
	sort.Strings(wantStale)
	if got := monSortedStrings(rep.summary["stale"]); !slices.Equal(got, wantStale) {
		t.Errorf("summary.stale = %v, the pollers' own copies and the ids not seen say %v", got, wantStale)
	}
	if got := stringList(rep.summary["declared_not_seen"]); !slices.Equal(got, notSeen) {
		t.Errorf("summary.declared_not_seen = %v, want %v", got, notSeen)
	}
	freshAll := len(declared) - len(wantStale)
	monWantFloat(t, "summary.coverage", rep.summary["coverage"], float64(freshAll)/float64(len(declared)))
	if got := asInt(t, "declared_seen", rep.summary["declared_seen"]); got != int64(len(seen)) {
		t.Errorf("summary.declared_seen = %d, want %d", got, len(seen))
	}
	if got := asInt(t, "tracked_clients", rep.summary["tracked_clients"]); got != int64(len(seen)+1) {
		t.Errorf("summary.tracked_clients = %d, want %d declared plus 1 anonymous", got, len(seen))
	}
	if got := asInt(t, "tracked_capacity", rep.summary["tracked_capacity"]); got != 10000 {
		t.Errorf("summary.tracked_capacity = %d, want 10000", got)
	}
	if got := asInt(t, "evicted_clients", rep.summary["evicted_clients"]); got != 0 {
		t.Errorf("summary.evicted_clients = %d, want 0", got)
	}

	// Per ring: the share of declared verifiers holding its active and
	// pending keys.
	for _, name := range ringNames {
		r := rep.ring(t, name)
		active, pending := current[name][0], current[name][1]
		var ringStale []string
		for p, fs := range logs {
			if p.verifier == "" || len(fs) == 0 {
				continue
			}
			if last := fs[len(fs)-1]; !holds(last, active) || !holds(last, pending) {
				ringStale = append(ringStale, p.verifier)
			}
		}
		ringStale = append(ringStale, notSeen...)
		sort.Strings(ringStale)
		if got := monSortedStrings(r["stale"]); !slices.Equal(got, ringStale) {
			t.Errorf("ring %s: stale %v, want %v", name, got, ringStale)
		}
		if got := asInt(t, "declared", r["declared"]); got != int64(len(declared)) {
			t.Errorf("ring %s: declared %d, want %d", name, got, len(declared))
		}
		wantFresh := len(declared) - len(ringStale)
		if got := asInt(t, "fresh", r["fresh"]); got != int64(wantFresh) {
			t.Errorf("ring %s: fresh %d, want %d", name, got, wantFresh)
		}
		monWantFloat(t, "ring "+name+" pending_coverage", r["pending_coverage"], float64(wantFresh)/float64(len(declared)))
	}
}

// monCheckMetrics scrapes `metrics?format=prometheus`, parses it with the
// Prometheus text parser and compares the figures with the scenario.
func monCheckMetrics(t *testing.T, m *mount, pollers []*monPoller, signedBy map[string]map[string]int, ringNames []string) {
	t.Helper()
	// Unauthenticated: refused.
	resp, body := rawGet(t, http.MethodGet, env.root.url(m.p("metrics?format=prometheus")), nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("metrics without a token: status %d, want 403: %s", resp.StatusCode, body)
	}
	// Prometheus sends the token as a bearer credential; Vault takes it.
	fams := monScrape(t, m, http.Header{"Authorization": {"Bearer " + rootToken}})
	now := time.Now().Unix()

	for name, typ := range map[string]dto.MetricType{
		"jwt_rotor_tokens_signed_total":          dto.MetricType_COUNTER,
		"jwt_rotor_jwks_requests_total":          dto.MetricType_COUNTER,
		"jwt_rotor_jwks_not_modified_total":      dto.MetricType_COUNTER,
		"jwt_rotor_rotations_total":              dto.MetricType_COUNTER,
		"jwt_rotor_activation_gate_delays_total": dto.MetricType_COUNTER,
		"jwt_rotor_key_age_seconds":              dto.MetricType_GAUGE,
		"jwt_rotor_seconds_to_next_rotation":     dto.MetricType_GAUGE,
		"jwt_rotor_published_keys":               dto.MetricType_GAUGE,
		"jwt_rotor_active_keys":                  dto.MetricType_GAUGE,
		"jwt_rotor_verifier_coverage":            dto.MetricType_GAUGE,
		"jwt_rotor_stale_verifiers":              dto.MetricType_GAUGE,
		"jwt_rotor_tracked_clients":              dto.MetricType_GAUGE,
	} {
		f, ok := fams[name]
		if !ok {
			t.Errorf("no metric family %s in the exposition", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %s, want %s", name, f.GetType(), typ)
		}
	}

	// Tokens signed per kid: exactly what the test signed.
	series := 0
	for _, s := range fams["jwt_rotor_tokens_signed_total"].GetMetric() {
		l := monLabels(s)
		series++
		if want := signedBy[l["ring"]][l["kid"]]; float64(want) != s.GetCounter().GetValue() {
			t.Errorf("tokens_signed_total{ring=%q,kid=%q} = %v, the test signed %d", l["ring"], l["kid"], s.GetCounter().GetValue(), want)
		}
	}
	wantSeries := 0
	for _, kids := range signedBy {
		wantSeries += len(kids)
	}
	if series != wantSeries {
		t.Errorf("tokens_signed_total has %d series, the test signed with %d kids: %v", series, wantSeries, signedBy)
	}

	// JWKS requests and 304s: what the pollers logged.
	var fetches, notModified int
	for _, p := range pollers {
		for _, f := range p.fetches(t) {
			if f.Status == 0 {
				continue
			}
			fetches++
			if f.Status == http.StatusNotModified {
				notModified++
			}
		}
	}
	if got, _ := monValue(fams, "jwt_rotor_jwks_requests_total", map[string]string{"document": "all"}); got != float64(fetches) {
		t.Errorf(`jwks_requests_total{document="all"} = %v, the pollers made %d fetches`, got, fetches)
	}
	if got, _ := monValue(fams, "jwt_rotor_jwks_not_modified_total", map[string]string{"document": "all"}); got != float64(notModified) {
		t.Errorf(`jwks_not_modified_total{document="all"} = %v, the pollers got %d 304s`, got, notModified)
	}
	if notModified == 0 {
		t.Errorf("the pollers got no 304 at all: revalidation with If-None-Match does not work")
	}
	if got, _ := monValue(fams, "jwt_rotor_tracked_clients", nil); got != float64(len(pollers)) {
		t.Errorf("tracked_clients = %v, want %d pollers", got, len(pollers))
	}

	for _, name := range ringNames {
		ringLabel := map[string]string{"ring": name}
		r := readRing(t, m, name)
		if got, _ := monValue(fams, "jwt_rotor_rotations_total", map[string]string{"ring": name, "reason": "manual, forced"}); got != 1 {
			t.Errorf(`rotations_total{ring=%q,reason="manual, forced"} = %v, want 1`, name, got)
		}
		activated := 0
		for _, k := range r.SigningKeys {
			if k.ActivateAt != 0 && k.ActivateAt <= now && k.RevokedAt == 0 {
				activated++
			}
		}
		// The forced first key is not a scheduled rotation.
		if got, _ := monValue(fams, "jwt_rotor_rotations_total", map[string]string{"ring": name, "reason": "scheduled"}); got < 1 || got > float64(activated-1) {
			t.Errorf(`rotations_total{ring=%q,reason="scheduled"} = %v, want 1..%d (scheduled activations so far)`, name, got, activated-1)
		}
		if got, _ := monValue(fams, "jwt_rotor_activation_gate_delays_total", ringLabel); got < 1 {
			t.Errorf("activation_gate_delays_total{ring=%q} = %v, the gate delayed it", name, got)
		}
		if got, _ := monValue(fams, "jwt_rotor_active_keys", ringLabel); got != 1 {
			t.Errorf("active_keys{ring=%q} = %v, want 1", name, got)
		}
		published := 0
		for _, k := range r.SigningKeys {
			switch k.State {
			case "pending", "active", "retiring":
				published++
				age, ok := monValue(fams, "jwt_rotor_key_age_seconds", map[string]string{"ring": name, "kid": k.Kid, "state": k.State})
				if !ok || math.Abs(age-float64(now-k.PublishAt)) > 2 {
					t.Errorf("key_age_seconds{ring=%q,kid=%q,state=%q} = %v (present %v), published at %d, now %d", name, k.Kid, k.State, age, ok, k.PublishAt, now)
				}
			}
		}
		if got, _ := monValue(fams, "jwt_rotor_published_keys", ringLabel); got != float64(published) {
			t.Errorf("published_keys{ring=%q} = %v, the ring publishes %d", name, got, published)
		}
		if got, ok := monValue(fams, "jwt_rotor_seconds_to_next_rotation", ringLabel); !ok || math.Abs(got-float64(r.NextRotation-now)) > 2 {
			t.Errorf("seconds_to_next_rotation{ring=%q} = %v (present %v), next_rotation is %d, now %d", name, got, ok, r.NextRotation, now)
		}
		// Coverage and stale count: the pollers' last copies against the
		// pending key.
		pending, _ := r.nextPending()
		fresh, stale := 0, 0
		for _, p := range pollers {
			if p.verifier == "" {
				continue
			}
			fs := p.fetches(t)
			if len(fs) > 0 && slices.Contains(fs[len(fs)-1].Kids, pending.Kid) {
				fresh++
			} else {
				stale++
			}
		}
		stale++ // ghost, never seen
		if got, _ := monValue(fams, "jwt_rotor_verifier_coverage", ringLabel); math.Abs(got-float64(fresh)/5) > 1e-9 {
			t.Errorf("verifier_coverage{ring=%q} = %v, want %d of 5", name, got, fresh)
		}
		if got, _ := monValue(fams, "jwt_rotor_stale_verifiers", ringLabel); got != float64(stale) {
			t.Errorf("stale_verifiers{ring=%q} = %v, want %d", name, got, stale)
		}
		t.Logf("ring %s: coverage %d/5, stale %d, published %d, scheduled rotations counted %v",
			name, fresh, stale, published, monFirst(monValue(fams, "jwt_rotor_rotations_total", map[string]string{"ring": name, "reason": "scheduled"})))
	}
	t.Logf("JWKS fetches %d (304: %d), tokens signed %v", fetches, notModified, signedBy)

	// The JSON form carries the same families.
	js := env.root.mustRead(t, m.p("metrics"))
	for name := range fams {
		if _, ok := js.Data[name]; !ok {
			t.Errorf("metrics (JSON) lacks %s", name)
		}
	}
}

func monFirst(v float64, _ bool) float64 { return v }

// monScrape fetches the Prometheus exposition the way a scraper does and
// parses it with the Prometheus text parser.
func monScrape(t testing.TB, m *mount, header http.Header) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := rawGet(t, http.MethodGet, env.root.url(m.p("metrics?format=prometheus")), header)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics?format=prometheus: status %d: %s", resp.StatusCode, body)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" || params["version"] != "0.0.4" {
		t.Errorf("metrics?format=prometheus: Content-Type %q, want text/plain; version=0.0.4", resp.Header.Get("Content-Type"))
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		t.Fatalf("metrics?format=prometheus returned JSON, not the text exposition: %.300s", body)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the Prometheus text parser rejects the exposition: %v\n%s", err, body)
	}
	return fams
}

func monLabels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// monValue finds the series of a family whose labels are exactly want.
func monValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, s := range f.GetMetric() {
		l := monLabels(s)
		if len(l) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			if l[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case s.GetCounter() != nil:
			return s.GetCounter().GetValue(), true
		case s.GetGauge() != nil:
			return s.GetGauge().GetValue(), true
		case s.GetUntyped() != nil:
			return s.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func monWantFloat(t testing.TB, what string, v any, want float64) {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Errorf("%s is %T (%v), want a number", what, v, v)
		return
	}
	got, err := n.Float64()
	if err != nil || math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %s, want %v", what, n, want)
	}
}

func monSortedStrings(v any) []string {
	out := stringList(v)
	if out == nil {
		out = []string{}
	}
	sort.Strings(out)
	return out
}

// monWait polls cond about twice a second until it holds or timeout passes.
func monWait(t testing.TB, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout.Round(time.Second), what, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func monSleepUntil(at time.Time) {
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
}

// monBuildPoller builds the verifier program into a temporary directory.
func monBuildPoller(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build the poller: %v", err)
	}
	out := filepath.Join(t.TempDir(), "poller")
	cmd := exec.Command(goBin, "build", "-o", out, "./internal/poller")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./internal/poller: %v\n%s", err, b)
	}
	return out
}

// monPoller is one running verifier process.
type monPoller struct {
	name, verifier, ua string
	log                string
	cmd                *exec.Cmd
	exited             chan struct{}
}

// monFetch is one line of a poller's log.
type monFetch struct {
	Seq    int      `json:"seq"`
	Start  int64    `json:"start"`
	End    int64    `json:"end"`
	Status int      `json:"status"`
	ETag   string   `json:"etag"`
	Kids   []string `json:"kids"`
	Error  string   `json:"error"`
}

// monStartPoller starts a poller; interval 0 means it fetches once and
// never again.
func monStartPoller(t *testing.T, bin, url, name, verifier, ua string, interval time.Duration) *monPoller {
	t.Helper()
	p := &monPoller{name: name, verifier: verifier, ua: ua, log: filepath.Join(t.TempDir(), name+".jsonl"), exited: make(chan struct{})}
	args := []string{"-url", url, "-user-agent", ua, "-out", p.log}
	if verifier != "" {
		args = append(args, "-verifier", verifier)
	}
	if interval == 0 {
		args = append(args, "-once")
	} else {
		args = append(args, "-interval", interval.String())
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = os.Stderr
	testserver.SetChildAttrs(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start poller %s: %v", name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop asks the poller to finish its fetch in flight and exit.
func (p *monPoller) stop(t testing.TB) {
	if !testserver.StopProcess(p.cmd, p.exited, syscall.SIGTERM, 30*time.Second) {
		t.Errorf("poller %s did not stop on SIGTERM", p.name)
	}
}

// fetches reads every complete line the poller has logged.
func (p *monPoller) fetches(t testing.TB) []monFetch {
	t.Helper()
	raw, err := os.ReadFile(p.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []monFetch
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Bytes()
		if len(out) == bytes.Count(raw, []byte("\n")) {
			break // a line still being written
		}
		var f monFetch
		if err := json.Unmarshal(line, &f); err != nil {
			t.Fatalf("poller %s log: %v: %s", p.name, err, line)
		}
		if f.Error != "" {
			t.Errorf("poller %s fetch %d: %s", p.name, f.Seq, f.Error)
		}
		out = append(out, f)
	}
	return out
}

func (p *monPoller) last(t testing.TB) (monFetch, bool) {
	t.Helper()
	fs := p.fetches(t)
	if len(fs) == 0 {
		return monFetch{}, false
	}
	return fs[len(fs)-1], true
}
