package jwtrotor

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// staleGauge returns the value of a per-ring verifier gauge from the metrics
// path's JSON answer, and whether the ring has that series.
func staleGauge(data map[string]any, family, ring string) (float64, bool) {
	series, _ := data[family].([]map[string]any)
	for _, s := range series {
		if s["labels"].(map[string]string)["ring"] == ring {
			return s["value"].(float64), true
		}
	}
	return 0, false
}

// Issue 18, item 7: with payments-gateway and billing-api declared and only
// the first fetching, summary.stale was [] while rings.payments.stale was
// [billing-api] and jwt_rotor_stale_verifiers was 1. A declared verifier
// that never fetched is stale in the summary, in its ring and in the
// metrics alike, and every coverage figure counts it.
func TestRegressionVerifierReportAgreesOnUnseenVerifier(t *testing.T) {
	t.Parallel()
	e := onlyGatewayFetches(t)

	rep := e.read("verifiers").Data
	sum := rep["summary"].(map[string]any)
	ring := rep["rings"].(map[string]any)["payments"].(map[string]any)
	want := []string{"billing-api"}
	if got := sum["stale"].([]string); !slices.Equal(got, want) {
		t.Errorf("summary.stale = %v, want %v", got, want)
	}
	if got := ring["stale"].([]string); !slices.Equal(got, want) {
		t.Errorf("rings.payments.stale = %v, want %v", got, want)
	}
	if got := sum["coverage"]; got != 0.5 {
		t.Errorf("summary.coverage = %v, want 0.5 (1 of 2 declared)", got)
	}
	if got := ring["pending_coverage"]; got != 0.5 {
		t.Errorf("rings.payments.pending_coverage = %v, want 0.5", got)
	}
	met := e.read("metrics").Data
	if v, ok := staleGauge(met, "jwt_rotor_stale_verifiers", "payments"); !ok || v != 1 {
		t.Errorf("jwt_rotor_stale_verifiers{ring=payments} = %v (present %v), want 1", v, ok)
	}
	if v, ok := staleGauge(met, "jwt_rotor_verifier_coverage", "payments"); !ok || v != 0.5 {
		t.Errorf("jwt_rotor_verifier_coverage{ring=payments} = %v (present %v), want 0.5", v, ok)
	}
}

// onlyGatewayFetches is the ring payments with two declared verifiers, of
// which only payments-gateway has fetched the JWKS.
func onlyGatewayFetches(t *testing.T) *testEnv {
	e := newEnv(t)
	e.setupRing("payments", "ES256", nil)
	e.mustWrite("config", map[string]any{"verifiers": "payments-gateway,billing-api"})
	e.fetch("jwks", "payments-gateway", "192.0.2.10:4000", "envoy", "")
	return e
}

// TestStaleRuleAgreesEverywhere draws random tracker states (declared ids
// and ranges, fetchers of every document, at every age, holding random
// subsets of the keys) over random rings (pending only, active and
// pending, active only, deleted) and checks that the verifiers report's
// summary, its rings and its fetcher entries, the metrics and the
// activation gate all give the same stale verifiers and the same coverage.
// A failure prints rapid's seed; RAPID_SEED=<seed> replays it.
func TestStaleRuleAgreesEverywhere(t *testing.T) {
	setFlag(t, "rapid.nofailfile", "true")
	rapid.Check(t, func(rt *rapid.T) {
		e := newEnv(t)
		e.b.keys = sharedKeys.source()
		ids := []string{"a", "b", "c"}
		cfg := map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60,
			"verifiers": rapid.SliceOfDistinct(rapid.SampledFrom(ids), rapid.ID[string]).Draw(rt, "declared-ids")}
		if rapid.Bool().Draw(rt, "cidr") {
			cfg["verifier_cidrs"] = []string{"10.0.0.0/8"}
		}
		e.mustWrite("config", cfg)
		names := rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"payments", "billing", "zeta"}), 1, 3, rapid.ID[string]).Draw(rt, "rings")
		for _, n := range names {
			e.mustWrite("keys/"+n, map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
			if rapid.Bool().Draw(rt, "force-"+n) {
				e.mustWrite("keys/"+n+"/rotate", map[string]any{"force": true})
			}
		}
		e.clock.Advance(time.Duration(rapid.IntRange(0, 180).Draw(rt, "advance-min")) * time.Minute)
		if rapid.Bool().Draw(rt, "maintain") {
			if err := e.maintain(); err != nil {
				rt.Fatal(err)
			}
		}
		if rapid.IntRange(0, 4).Draw(rt, "delete") == 0 {
			if resp, err := e.do(logical.DeleteOperation, "keys/"+names[0], nil); err != nil || resp.IsError() {
				rt.Fatalf("delete %s: %v %v", names[0], err, resp)
			}
		}
		e.mustWrite("config", map[string]any{}) // reload, as a config write does

		// Documents: random subsets of every kid the rings ever had.
		kids := []string{"kid-unknown"}
		for _, n := range names {
			r, err := readRing(context.Background(), e.storage, n)
			if err != nil {
				rt.Fatal(err)
			}
			if r == nil {
				continue // deleted with nothing published: gone at once
			}
			for _, k := range r.Keys {
				kids = append(kids, k.KID)
			}
		}
		docs := rapid.SliceOfN(rapid.SliceOfDistinct(rapid.SampledFrom(kids), rapid.ID[string]), 1, 4).Draw(rt, "docs")
		scopes := append([]string{allScope, discoveryScope, "nosuch"}, names...)
		now := e.b.now()
		declared := declaredBy(e.b.config)
		for i, n := 0, rapid.IntRange(0, 8).Draw(rt, "fetchers"); i < n; i++ {
			verifier := rapid.SampledFrom([]string{"", "a", "b", "c", "d"}).Draw(rt, "verifier")
			addr := rapid.SampledFrom([]string{"10.1.1.1:1", "10.2.2.2:1", "192.0.2.1:1"}).Draw(rt, "addr")
			ua := rapid.SampledFrom([]string{"envoy", "jose"}).Draw(rt, "ua")
			for j, m := 0, rapid.IntRange(1, 3).Draw(rt, "fetches"); j < m; j++ {
				scope := rapid.SampledFrom(scopes).Draw(rt, "scope")
				d := rapid.IntRange(0, len(docs)-1).Draw(rt, "doc")
				served, held := fmt.Sprintf(`"doc-%d"`, d), docs[d]
				if scope == discoveryScope {
					served, held = "", nil
				}
				age := int64(rapid.SampledFrom([]int{0, 60, 3599, 3600, 3601, 7200}).Draw(rt, "age"))
				e.b.tracker.observe(verifier, addr, ua, "", scope, served, held, now-age, declared.has(verifier, addr))
			}
		}

		rep := e.read("verifiers").Data
		checkReportConsistent(rt, rep, e.b.config.Verifiers)
		if w := rapid.SampledFrom([]string{"1m", "2h"}).Draw(rt, "window"); w != "" {
			resp, err := e.do(logical.ReadOperation, "verifiers", map[string]any{"window": w})
			if err != nil || resp.IsError() {
				rt.Fatalf("verifiers window=%s: %v %v", w, err, resp)
			}
			checkReportConsistent(rt, resp.Data, e.b.config.Verifiers)
		}

		// The metrics and the gate read the same rule, with the default
		// window the report above was read with.
		met := e.read("metrics").Data
		snap, err := e.b.load(context.Background(), e.storage)
		if err != nil {
			rt.Fatal(err)
		}
		gate := e.b.gateOf(snap, now, nil).coverage
		rings := rep["rings"].(map[string]any)
		for _, n := range names {
			r := snap.rings[n]
			entry, listed := rings[n].(map[string]any)
			if r == nil || r.DeletedAt != 0 {
				if listed {
					rt.Fatalf("deleted ring %s is in the report", n)
				}
				continue
			}
			g := gate(r)
			if !slices.Equal(entry["stale"].([]string), g.Stale) || entry["declared"] != g.Declared || entry["fresh"] != g.Fresh {
				rt.Fatalf("ring %s: report declared %v fresh %v stale %v; gate declared %d fresh %d stale %v",
					n, entry["declared"], entry["fresh"], entry["stale"], g.Declared, g.Fresh, g.Stale)
			}
			cov, hasCov := staleGauge(met, "jwt_rotor_verifier_coverage", n)
			st, hasSt := staleGauge(met, "jwt_rotor_stale_verifiers", n)
			if entry["pending_kid"] == "" {
				if hasCov || hasSt || entry["pending_coverage"] != nil {
					rt.Fatalf("ring %s has no pending key but coverage figures: metrics %v %v report %v", n, cov, st, entry["pending_coverage"])
				}
				continue
			}
			if !hasCov || !hasSt || entry["pending_coverage"] != g.Ratio || cov != g.Ratio || st != float64(len(g.Stale)) {
				rt.Fatalf("ring %s: report coverage %v, metric coverage %v (%v), metric stale %v (%v); gate coverage %v stale %v",
					n, entry["pending_coverage"], cov, hasCov, st, hasSt, g.Ratio, g.Stale)
			}
		}
	})
}

// checkReportConsistent checks one verifiers report against itself: every
// ring's stale verifiers are stale in the summary and, when there is a
// ring, the summary names no others; the summary's stale verifiers are the
// counted stale fetchers plus the declared ids with no entry; every
// coverage is fresh over counted; anonymous fetchers never count.
func checkReportConsistent(t *rapid.T, rep map[string]any, declaredIDs []string) {
	sum := rep["summary"].(map[string]any)
	stale := sum["stale"].([]string)
	if !sort.StringsAreSorted(stale) {
		t.Fatalf("summary.stale %v is not sorted", stale)
	}
	want, counted := []string{}, 0
	listed := map[string]bool{}
	for _, e := range rep["declared"].([]map[string]any) {
		name := e["verifier"].(string)
		if name == "" {
			name = e["remote_addr"].(string) + " (" + e["user_agent"].(string) + ")"
		}
		listed[name] = true
		if (!e["has_active"].(bool) || !e["has_pending"].(bool)) && !e["stale"].(bool) {
			t.Fatalf("entry %s: stale %v with has_active %v has_pending %v", name, e["stale"], e["has_active"], e["has_pending"])
		}
		if e["counted"].(bool) {
			counted++
			if e["stale"].(bool) {
				want = append(want, name)
			}
		}
	}
	for _, e := range rep["anonymous"].([]map[string]any) {
		if e["counted"].(bool) {
			t.Fatalf("anonymous fetcher %v counts", e)
		}
	}
	for _, id := range declaredIDs {
		if !listed[id] {
			counted++
			want = append(want, id)
		}
	}
	sort.Strings(want)
	if !slices.Equal(stale, want) {
		t.Fatalf("summary.stale %v, but the entries and the declared ids give %v", stale, want)
	}
	wantCov := 1.0
	if counted > 0 {
		wantCov = float64(counted-len(want)) / float64(counted)
	}
	if math.Abs(sum["coverage"].(float64)-wantCov) > 1e-12 {
		t.Fatalf("summary.coverage %v, want %d of %d counted", sum["coverage"], counted-len(want), counted)
	}
	union := map[string]bool{}
	rings := rep["rings"].(map[string]any)
	for n, r := range rings {
		r := r.(map[string]any)
		rs := r["stale"].([]string)
		d, f := r["declared"].(int), r["fresh"].(int)
		if f+len(rs) != d || d > counted {
			t.Fatalf("ring %s: declared %d fresh %d stale %v (%d counted in the mount)", n, d, f, rs, counted)
		}
		if c, ok := r["pending_coverage"].(float64); ok && d > 0 && math.Abs(c-float64(f)/float64(d)) > 1e-12 {
			t.Fatalf("ring %s: pending_coverage %v, fresh %d of %d", n, c, f, d)
		}
		for _, s := range rs {
			if !slices.Contains(stale, s) {
				t.Fatalf("ring %s names %s stale; the summary %v does not", n, s, stale)
			}
			union[s] = true
		}
	}
	if len(rings) > 0 && len(union) != len(stale) {
		t.Fatalf("summary.stale %v, but the rings name only %v as stale", stale, union)
	}
	// The lines for vault read's table say the same.
	lines := rep["coverage_summary"].([]string)
	if len(lines) != len(rings)+1 || !strings.HasPrefix(lines[0], fmt.Sprintf("mount coverage=%.2f declared=%d fresh=%d stale=%s ",
		sum["coverage"], counted, counted-len(stale), lineList(stale))) {
		t.Fatalf("coverage_summary %q against summary %v", lines, sum)
	}
	for _, l := range lines[1:] {
		name := strings.Fields(strings.TrimPrefix(l, "ring="))[0]
		r := rings[name].(map[string]any)
		if !strings.HasSuffix(l, fmt.Sprintf(" declared=%d fresh=%d stale=%s", r["declared"], r["fresh"], lineList(r["stale"].([]string)))) {
			t.Fatalf("coverage_summary line %q against rings.%s %v", l, name, r)
		}
	}
}
