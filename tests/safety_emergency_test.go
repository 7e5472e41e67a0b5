package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestSafetyEmergencyOperations drives every emergency operation end to end
// on a real Vault, with the verifier libraries polling the mount's JWKS:
// rotate with revoke_active and with force, a plain rotate before the lead
// (scheduled, not immediate), revoke of the active, the pending and a
// retiring kid, rollback right after a rotation, and rollback refused once
// the previous key is revoked or removed. For each, the JWKS and signing
// change at once; every verifier that refreshes on a timer (max-age or its
// own interval) rejects tokens of a revoked key once it has refetched the
// JWKS after the revocation, never accepting one after that refetch; a
// revoked or removed kid never comes back in any JWKS the watcher fetched
// after it went (and the watcher fetched after every revocation); and
// rollback moves no remove_at past its original value plus one
// rotation_period. Waits are for events (a verifier's fetches, Vault's own
// timestamps and answers), not for a number of seconds. Takes about a
// minute and a half (the removal case waits for a real remove_at).
func TestSafetyEmergencyOperations(t *testing.T) {
	t.Parallel()
	const maxAge = 4
	m := newMount(t, "saf-emerg", map[string]any{"jwks_max_age": maxAge, "verifiers": declaredNames()})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	vs := startVerifiers(t, ctx, verifierConfig{
		issuer: m.issuer, audience: apiAudience, alg: "ES256", interval: maxAge * time.Second,
	}, jwksURLFor(env.root.url(m.p("jwks"))))
	e := &emergency{m: m, vs: vs, maxAge: maxAge * time.Second, watch: newJWKSWatch(m)}
	go e.watch.run(ctx, 500*time.Millisecond)

	// Rings created now are in every verifier's cache before the cases run.
	// Their cases assume no scheduled rotation since their creation: a
	// rotation_period longer than the test, however slow the set-up.
	standard := map[string]any{
		"algorithm": "ES256", "rotation_period": longLead, "publish_lead": 10, "verification_ttl": 120,
	}
	for _, name := range []string{"revoke-active", "revoke-pending", "revoke-retiring", "rollback-revoked"} {
		e.ring(t, name, standard)
	}
	// A lead far longer than the test, so that the pending key is still
	// serving it when the case runs however slow the machine, and force
	// really cuts it short (Vault's "forced" warning says it did).
	for _, name := range []string{"revoke-active-rotate", "force"} {
		e.ring(t, name, map[string]any{
			"algorithm": "ES256", "rotation_period": longLead, "publish_lead": longLead, "verification_ttl": 120,
		})
	}
	e.ring(t, "rollback", map[string]any{
		"algorithm": "ES256", "rotation_period": 20, "publish_lead": 10, "verification_ttl": 120,
	})
	// verification_ttl below rotation_period: the retiring key leaves the
	// JWKS while its rollback window would still be open.
	e.ring(t, "rollback-removed", map[string]any{
		"algorithm": "ES256", "rotation_period": 90, "publish_lead": 10, "verification_ttl": 61,
	})
	e.awaitRefresh(t, "the rings created before the cases", e.sign(t, "revoke-active", ""))

	// The cases run at the same time, each on its own ring. They are not
	// t.Parallel subtests: those would wait for -parallel slots, and the
	// cases that need a key younger than its lead cannot wait.
	cases := []struct {
		name string
		run  func(*testing.T)
	}{
		{"rotate revoke_active", e.caseRotateRevokeActive},
		{"rotate force", e.caseRotateForce},
		{"rotate before the lead is scheduled", e.caseRotateScheduled},
		{"revoke active", e.caseRevokeActive},
		{"revoke pending", e.caseRevokePending},
		{"revoke retiring", e.caseRevokeRetiring},
		{"rollback after rotation", e.caseRollback},
		{"rollback refused after revoke", e.caseRollbackRevoked},
		{"rollback refused after removal", e.caseRollbackRemoved},
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(c.name, c.run)
		}()
	}
	wg.Wait()

	// Last word on monotonicity: a fresh JWKS, and everything the watcher
	// saw during the run, which must include a fetch after every ban.
	banned := e.watch.bannedSince()
	var lastBan time.Time
	for _, at := range banned {
		if at.After(lastBan) {
			lastBan = at
		}
	}
	e.watch.awaitFetchAfter(t, lastBan)
	cancel()
	e.watch.wait()
	final := fetchJWKS(t, m, "jwks")
	for kid, at := range e.watch.bannedSince() {
		if final.has(kid) {
			t.Errorf("kid %s, gone since %s, is in the final JWKS", kid, at.Format(time.TimeOnly))
		}
	}
	if errs := e.watch.errors(); len(errs) > 0 {
		for i, err := range errs {
			if i == 5 {
				t.Errorf("and %d more watcher errors", len(errs)-5)
				break
			}
			t.Error(err)
		}
	}
	if len(banned) != 6 {
		t.Errorf("the watcher was told of %d revoked or removed kids, want the 6 the cases revoke or remove", len(banned))
	}
	for kid, at := range banned {
		if n := e.watch.fetchesAfter(at); n == 0 {
			t.Errorf("the watcher fetched no JWKS after %s was banned at %s: that kid was never checked", kid, at.Format("15:04:05.000"))
		}
	}
	t.Logf("JWKS watcher: %d fetches, %d after the first ban; %d kids banned after revocation or removal, each followed by a fetch, none came back",
		e.watch.fetchCount(), e.watch.fetchesAfter(e.watch.firstBan()), len(banned))
	for _, line := range e.rejectionLog() {
		t.Log(line)
	}
}

type emergency struct {
	m      *mount
	vs     map[string]jwksVerifier
	maxAge time.Duration
	watch  *jwksWatch

	mu         sync.Mutex
	rejections []string
}

func (e *emergency) ring(t *testing.T, name string, settings map[string]any) string {
	t.Helper()
	kid := createRing(t, e.m, name, settings)
	vttl := settings["verification_ttl"].(int)
	if vttl >= 120 {
		createRole(t, e.m, name, map[string]any{
			"key": name, "audiences": []string{apiAudience}, "ttl": 60, "max_ttl": 60,
		})
	}
	return kid
}

// sign signs on the ring's role and checks the kid.
func (e *emergency) sign(t *testing.T, ring, wantKid string) signedToken {
	t.Helper()
	s, err := signRole(context.Background(), env.signer, e.m, ring)
	if err != nil {
		t.Fatal(err)
	}
	if wantKid != "" && s.kid != wantKid {
		t.Fatalf("ring %s signs with %s, want %s", ring, s.kid, wantKid)
	}
	return s
}

// op writes keys/<ring>/<op> and requires a 200.
func (e *emergency) op(t *testing.T, ring, op string, body map[string]any) *apiResponse {
	t.Helper()
	return env.root.mustWrite(t, e.m.p("keys/"+ring+"/"+op), body)
}

// allAccept requires every verifier to accept the token now.
func (e *emergency) allAccept(t *testing.T, what string, s signedToken) {
	t.Helper()
	for _, name := range kindNames() {
		kid, err := e.vs[name].verify(context.Background(), s.token)
		if err != nil {
			t.Errorf("%s: %s (kid %s) rejected: %v", name, what, s.kid, err)
		} else if kid != s.kid {
			t.Errorf("%s: %s verified with kid %s, signed with %s", name, what, kid, s.kid)
		}
	}
}

// published requires the mount's and the ring's JWKS, fetched now with no
// cache, to hold (or lack) kids, and to let caches keep them no longer than
// jwks_max_age: that bound, not a stopwatch, is what makes every verifier
// that follows max-age refetch (awaitRejection checks what it does then).
func (e *emergency) published(t *testing.T, ring string, in, out []string) {
	t.Helper()
	for _, rel := range []string{"jwks", "jwks/" + ring} {
		f := fetchJWKS(t, e.m, rel)
		h := f.Resp.Header.Get("Cache-Control")
		if n, err := parseCacheControl(h).seconds("max-age"); err != nil || n < 1 || time.Duration(n)*time.Second > e.maxAge {
			t.Errorf("%s: Cache-Control %q: want max-age between 1 and jwks_max_age (%s)", rel, h, e.maxAge)
		}
		for _, kid := range in {
			if !f.has(kid) {
				t.Errorf("%s lacks %s right after the operation: %v", rel, kid, f.kids())
			}
		}
		for _, kid := range out {
			if f.has(kid) {
				t.Errorf("%s still holds %s right after the operation", rel, kid)
			}
		}
	}
}

// longLead is the publish_lead (and rotation_period) of the rings whose
// pending key a case forces: longer than the whole test, so the key is
// always still serving its lead when the case runs.
const longLead = 900

// fetches is how many JWKS requests verifier name has started: counted by
// its HTTP client, or, for the Node verifier, by the plugin's verifiers
// report under its declared id.
func (e *emergency) fetches(t *testing.T, name string) int64 {
	t.Helper()
	if n := e.vs[name].fetches(); n >= 0 {
		return n
	}
	report := env.root.mustRead(t, e.m.p("verifiers"))
	var n int64
	items, _ := report.Data["declared"].([]any)
	for _, it := range items {
		if d, ok := it.(map[string]any); ok && d["verifier"] == name {
			n += asInt(t, "fetches", d["fetches"])
		}
	}
	return n
}

// stallGuard only keeps a stalled verifier from hanging the test: every
// wait below ends on an event (a verifier's fetch, a rejection, Vault's
// clock passing a timestamp) long before it on any machine that works.
const stallGuard = 3 * time.Minute

// awaitRefresh waits until every verifier that refreshes on a timer has
// started two JWKS fetches since it was called: the first of them began
// after the call, and the second began after the first ended, so each holds
// a key set fetched after the call. It verifies tok with each meanwhile:
// the caches that follow max-age refresh on use, not on their own.
func (e *emergency) awaitRefresh(t *testing.T, what string, tok signedToken) {
	t.Helper()
	since := map[string]int64{}
	for _, k := range verifierKinds {
		if k.staleness(e.maxAge) > 0 {
			since[k.name] = e.fetches(t, k.name)
		}
	}
	deadline := time.Now().Add(stallGuard)
	for name, n := range since {
		for e.fetches(t, name) < n+2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: verifier %s made %d JWKS fetches in %s, want 2", what, name, e.fetches(t, name)-n, stallGuard)
			}
			_, _ = e.vs[name].verify(context.Background(), tok.token)
			time.Sleep(200 * time.Millisecond)
		}
	}
}

// awaitRejection checks that every verifier that refreshes on a timer
// stops accepting a revoked key's token once it has refetched the JWKS
// after the revocation, and keeps rejecting it: it may accept the token
// while its copy predates the revocation (the one fetch already under way
// then), never once a fetch that started after the revocation has ended.
// The bound is the verifier's own fetches, not a number of seconds. A
// verifier that refreshes only on an unknown kid is reported, not judged.
func (e *emergency) awaitRejection(t *testing.T, what string, s signedToken, revokedAt time.Time) {
	t.Helper()
	var wg sync.WaitGroup
	for _, k := range verifierKinds {
		if k.staleness(e.maxAge) == 0 {
			continue
		}
		// Read after the revocation: every fetch counted from here on
		// started after it.
		before := e.fetches(t, k.name)
		wg.Add(1)
		go func(k verifierKind) {
			defer wg.Done()
			v := e.vs[k.name]
			deadline := time.Now().Add(stallGuard)
			for {
				// Counted before verifying: a second fetch begun by then
				// means the first, begun after the revocation, had ended.
				after := e.fetches(t, k.name) - before
				_, err := v.verify(context.Background(), s.token)
				if err != nil {
					took := time.Since(revokedAt).Round(100 * time.Millisecond)
					// Rejected: it must stay rejected.
					for range 3 {
						time.Sleep(200 * time.Millisecond)
						if _, err := v.verify(context.Background(), s.token); err == nil {
							t.Errorf("%s accepted the %s token again after rejecting it", k.name, what)
						}
					}
					e.logRejection(fmt.Sprintf("%-14s %-26s rejected after %-5s and %d JWKS fetches started since the revocation: %.90s", k.name, what, took, after, err))
					return
				}
				if after >= 2 {
					t.Errorf("%s still accepts the %s token after %d JWKS fetches that started after the revocation (the first of them has ended)", k.name, what, after)
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("%s still accepts the %s token and made %d JWKS fetches in %s after the revocation: it stopped refreshing", k.name, what, after, stallGuard)
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}(k)
	}
	wg.Wait()
	// The others have all refreshed since the revocation; one that waits
	// for an unknown kid has not, and says so.
	for _, k := range verifierKinds {
		if k.staleness(e.maxAge) != 0 {
			continue
		}
		if _, err := e.vs[k.name].verify(context.Background(), s.token); err == nil {
			e.logRejection(fmt.Sprintf("%-14s %-26s still accepts once every other verifier has refetched: it refreshes only on an unknown kid, so a revoked kid it holds stays trusted until it restarts", k.name, what))
		} else {
			e.logRejection(fmt.Sprintf("%-14s %-26s rejected: %.90s", k.name, what, err))
		}
	}
}

func (e *emergency) logRejection(line string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rejections = append(e.rejections, line)
}

func (e *emergency) rejectionLog() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := slices.Clone(e.rejections)
	slices.Sort(out)
	return out
}

// state reads a ring and returns one key.
func (e *emergency) key(t *testing.T, ring, kid string) signingKey {
	t.Helper()
	k, ok := readRing(t, e.m, ring).byKid(kid)
	if !ok {
		t.Fatalf("ring %s lists no key %s", ring, kid)
	}
	return k
}

// youngerThanLead stops a case that needs a pending key still serving its
// lead (so that force has something to cut short), judged by Vault's own
// timestamps: the key is pending and its activation, as Vault scheduled it,
// is no sooner than its publication plus the lead.
func (e *emergency) youngerThanLead(t *testing.T, p signingKey, lead int64) {
	t.Helper()
	if p.State != "pending" || p.ActivateAt < p.PublishAt+lead {
		t.Fatalf("pending key %s (published %d, activates %d, %s) has served its lead (%ds) already; the case needs one that has not", p.Kid, p.PublishAt, p.ActivateAt, p.State, lead)
	}
}

func warningsMention(resp *apiResponse, word string) bool {
	for _, w := range resp.Warnings {
		if strings.Contains(strings.ToLower(w), word) {
			return true
		}
	}
	return false
}

func (e *emergency) activeAndNext(t *testing.T, ring string) (signingKey, signingKey) {
	t.Helper()
	r := readRing(t, e.m, ring)
	active := r.inState("active")
	next, ok := r.nextPending()
	if len(active) != 1 || !ok {
		t.Fatalf("ring %s: want one active and a pending key, have %+v", ring, r.SigningKeys)
	}
	return active[0], next
}

func (e *emergency) caseRotateRevokeActive(t *testing.T) {
	const ring = "revoke-active-rotate"
	a, p := e.activeAndNext(t, ring)
	e.youngerThanLead(t, p, longLead)
	tokA := e.sign(t, ring, a.Kid)
	e.allAccept(t, "active key's token before the rotation", tokA)

	resp := e.op(t, ring, "rotate", map[string]any{"revoke_active": true})
	at := time.Now()
	e.watch.ban(a.Kid, at)
	if !boolean(t, resp.Data, "rotated") || str(t, resp.Data, "previous_kid") != a.Kid || str(t, resp.Data, "active_kid") != p.Kid {
		t.Errorf("rotate revoke_active: %s, want rotated, previous_kid %s, active_kid %s", resp.Body, a.Kid, p.Kid)
	}
	if !warningsMention(resp, "revoked") || !warningsMention(resp, "forced") {
		t.Errorf("rotate revoke_active: warnings %q, want one about the revocation and one about the forced activation", resp.Warnings)
	}
	e.published(t, ring, []string{p.Kid}, []string{a.Kid})
	tokP := e.sign(t, ring, p.Kid)
	if k := e.key(t, ring, a.Kid); k.State != "revoked" || k.RevokedAt == 0 {
		t.Errorf("outgoing key after revoke_active: %+v, want revoked", k)
	}
	// The promoted key was published long before: every verifier has it.
	e.allAccept(t, "promoted key's token", tokP)
	e.awaitRejection(t, "revoke_active", tokA, at)
}

func (e *emergency) caseRotateForce(t *testing.T) {
	const ring = "force"
	a, p := e.activeAndNext(t, ring)
	e.youngerThanLead(t, p, longLead)
	tokA := e.sign(t, ring, a.Kid)

	before := time.Now().Unix()
	resp := e.op(t, ring, "rotate", map[string]any{"force": true})
	if !boolean(t, resp.Data, "rotated") || str(t, resp.Data, "active_kid") != p.Kid {
		t.Errorf("rotate force: %s, want rotated with active_kid %s", resp.Body, p.Kid)
	}
	if !warningsMention(resp, "forced") {
		t.Errorf("rotate force: warnings %q, want one saying the lead was cut short", resp.Warnings)
	}
	tokP := e.sign(t, ring, p.Kid)
	e.published(t, ring, []string{a.Kid, p.Kid}, nil)
	k := e.key(t, ring, a.Kid)
	if k.State != "retiring" || k.RetireAt < before || k.RetireAt > time.Now().Unix() || k.RemoveAt != k.RetireAt+120 {
		t.Errorf("outgoing key after force: %+v, want retiring since now with remove_at = retire_at + verification_ttl", k)
	}
	e.allAccept(t, "promoted key's token", tokP)
	// The retiring key keeps verifying in-flight tokens, also after every
	// verifier has refreshed.
	e.allAccept(t, "retiring key's token", tokA)
	e.awaitRefresh(t, "the forced rotation", tokA)
	e.allAccept(t, "retiring key's token after every refresh", tokA)
	e.published(t, ring, []string{a.Kid, p.Kid}, nil)
}

func (e *emergency) caseRotateScheduled(t *testing.T) {
	const lead = 20
	// A ring of its own, created now, so its pending key is younger than
	// the lead. Vault's answer says whether it still was at the rotation;
	// a machine too slow for that gets another fresh ring (a count, not a
	// number of seconds, bounds the tries).
	var ring, a string
	var p signingKey
	var tokA signedToken
	var resp *apiResponse
	for try := 1; ; try++ {
		ring = fmt.Sprintf("scheduled-%d", try)
		a = e.ring(t, ring, map[string]any{
			"algorithm": "ES256", "rotation_period": 60, "publish_lead": lead, "verification_ttl": 120,
		})
		_, p = e.activeAndNext(t, ring)
		e.youngerThanLead(t, p, lead)
		tokA = e.sign(t, ring, a)
		resp = e.op(t, ring, "rotate", map[string]any{})
		if str(t, resp.Data, "active_kid") != p.Kid {
			break
		}
		if try == 3 {
			t.Fatalf("rotate before the lead activated the key at once on %d fresh rings: the lead (%ds) passed before each rotation", try, lead)
		}
		t.Logf("ring %s: the lead passed before the rotation (activates_at %d); trying a fresh ring", ring, integer(t, resp.Data, "activates_at"))
	}
	at := integer(t, resp.Data, "activates_at")
	if at != p.PublishAt+lead {
		t.Errorf("rotate before the lead: activates_at %d, want publish_at + publish_lead = %d", at, p.PublishAt+lead)
	}
	if !warningsMention(resp, "scheduled") {
		t.Errorf("rotate before the lead: warnings %q, want one saying when the key activates", resp.Warnings)
	}
	// Nothing changes before activates_at (Vault's clock, read from the
	// token's iat): the old key signs, both stay published.
	k := e.key(t, ring, p.Kid)
	e.published(t, ring, []string{a, p.Kid}, nil)
	if s := e.sign(t, ring, ""); s.iat < at {
		if s.kid != a || k.State != "pending" {
			t.Errorf("before activates_at %d: signed at %d by %s (want the old key %s); promoted key %+v, want pending", at, s.iat, s.kid, a, k)
		}
	}
	if k.ActivateAt != at {
		t.Errorf("promoted key right after rotate: %+v, want activate_at %d", k, at)
	}

	// At activates_at the promoted key takes over, to the second: sign
	// until Vault's clock (the token's iat) passes it; the old key signing
	// after it ends the case.
	var first signedToken
	for first.kid == "" {
		s := e.sign(t, ring, "")
		switch {
		case s.kid == p.Kid:
			first = s
		case s.kid != a:
			t.Fatalf("ring signs with %s, neither the old key %s nor the promoted %s", s.kid, a, p.Kid)
		case s.iat > at:
			t.Fatalf("the old key %s still signs at %d, after activates_at %d", a, s.iat, at)
		default:
			time.Sleep(250 * time.Millisecond)
		}
	}
	if first.iat < at {
		t.Errorf("the promoted key signed at %d, before activates_at %d", first.iat, at)
	}
	e.allAccept(t, "scheduled key's first token", first)
	e.allAccept(t, "previous key's token", tokA)
}

func (e *emergency) caseRevokeActive(t *testing.T) {
	const ring = "revoke-active"
	a, p := e.activeAndNext(t, ring)
	tokA := e.sign(t, ring, a.Kid)
	e.allAccept(t, "active key's token before the revocation", tokA)

	resp := e.op(t, ring, "revoke", map[string]any{"kid": a.Kid})
	at := time.Now()
	e.watch.ban(a.Kid, at)
	if str(t, resp.Data, "revoked") != a.Kid || str(t, resp.Data, "active_kid") != p.Kid {
		t.Errorf("revoke active: %s, want revoked %s and active_kid %s", resp.Body, a.Kid, p.Kid)
	}
	if len(resp.Warnings) == 0 {
		t.Errorf("revoke active: no warning about the early activation of %s", p.Kid)
	}
	e.published(t, ring, []string{p.Kid}, []string{a.Kid})
	tokP := e.sign(t, ring, p.Kid)
	r := readRing(t, e.m, ring)
	if k, _ := r.byKid(a.Kid); k.State != "revoked" {
		t.Errorf("revoked key: %+v", k)
	}
	if act := r.inState("active"); len(act) != 1 || act[0].Kid != p.Kid {
		t.Errorf("after revoking the active key, active keys are %+v, want %s", act, p.Kid)
	}
	e.allAccept(t, "promoted key's token", tokP)
	e.awaitRejection(t, "revoke active", tokA, at)
}

func (e *emergency) caseRevokePending(t *testing.T) {
	const ring = "revoke-pending"
	a, p := e.activeAndNext(t, ring)
	tokA := e.sign(t, ring, a.Kid)

	resp := e.op(t, ring, "revoke", map[string]any{"kid": p.Kid})
	e.watch.ban(p.Kid, time.Now())
	if str(t, resp.Data, "revoked") != p.Kid {
		t.Errorf("revoke pending: %s, want revoked %s", resp.Body, p.Kid)
	}
	e.published(t, ring, []string{a.Kid}, []string{p.Kid})
	e.sign(t, ring, a.Kid)
	r := readRing(t, e.m, ring)
	if k, _ := r.byKid(p.Kid); k.State != "revoked" {
		t.Errorf("revoked pending key: %+v", k)
	}
	next, ok := r.nextPending()
	if !ok {
		t.Fatalf("after revoking the pending key no pending key is left: %+v", r.SigningKeys)
	}
	if next.Kid == p.Kid {
		t.Fatalf("the revoked key %s is still the next pending key", p.Kid)
	}
	if next.ActivateAt < next.PublishAt+10 {
		t.Errorf("next pending key %s activates %ds after it was published, less than the lead", next.Kid, next.ActivateAt-next.PublishAt)
	}
	if r.NextRotation != next.ActivateAt {
		t.Errorf("next_rotation %d, want the new next key's activate_at %d", r.NextRotation, next.ActivateAt)
	}
	if k, _ := r.byKid(a.Kid); k.RetireAt != next.ActivateAt {
		t.Errorf("active key retires at %d, want the new next activation %d", k.RetireAt, next.ActivateAt)
	}
	// The revoked key never signs: a forced rotation promotes the next one.
	resp = e.op(t, ring, "rotate", map[string]any{"force": true})
	if got := str(t, resp.Data, "active_kid"); got != next.Kid {
		t.Errorf("forced rotation after revoking the pending key promoted %s, want %s", got, next.Kid)
	}
	e.sign(t, ring, next.Kid)
	e.allAccept(t, "active key's token", tokA)
}

func (e *emergency) caseRevokeRetiring(t *testing.T) {
	const ring = "revoke-retiring"
	a, p := e.activeAndNext(t, ring)
	tokA := e.sign(t, ring, a.Kid)
	e.op(t, ring, "rotate", map[string]any{"force": true})
	if k := e.key(t, ring, a.Kid); k.State != "retiring" {
		t.Fatalf("after a forced rotation the old key is %+v, want retiring", k)
	}
	e.allAccept(t, "retiring key's token", tokA)

	resp := e.op(t, ring, "revoke", map[string]any{"kid": a.Kid})
	at := time.Now()
	e.watch.ban(a.Kid, at)
	if str(t, resp.Data, "revoked") != a.Kid {
		t.Errorf("revoke retiring: %s", resp.Body)
	}
	e.published(t, ring, []string{p.Kid}, []string{a.Kid})
	e.sign(t, ring, p.Kid)
	if k := e.key(t, ring, a.Kid); k.State != "revoked" {
		t.Errorf("revoked retiring key: %+v", k)
	}
	e.awaitRejection(t, "revoke retiring", tokA, at)
}

func (e *emergency) caseRollback(t *testing.T) {
	const ring = "rollback"
	const period = 20
	a, p := e.activeAndNext(t, ring)
	tokA := e.sign(t, ring, a.Kid)
	e.op(t, ring, "rotate", map[string]any{"force": true})
	tokP := e.sign(t, ring, p.Kid)

	// The schedule the rotation set: the reference for "original".
	orig := readRing(t, e.m, ring)
	origA, _ := orig.byKid(a.Kid)
	if origA.State != "retiring" {
		t.Fatalf("old key after the rotation: %+v, want retiring", origA)
	}

	resp := e.op(t, ring, "rollback", map[string]any{})
	until := origA.RetireAt + period
	if str(t, resp.Data, "active_kid") != a.Kid || str(t, resp.Data, "pending_kid") != p.Kid || integer(t, resp.Data, "activates_at") != until {
		t.Errorf("rollback: %s, want active_kid %s, pending_kid %s, activates_at %d", resp.Body, a.Kid, p.Kid, until)
	}
	e.sign(t, ring, a.Kid)
	e.published(t, ring, []string{a.Kid, p.Kid}, nil)
	after := readRing(t, e.m, ring)
	if k, _ := after.byKid(a.Kid); k.State != "active" || k.RetireAt != until {
		t.Errorf("restored key: %+v, want active until %d", k, until)
	}
	if k, _ := after.byKid(p.Kid); k.State != "pending" || k.ActivateAt != until {
		t.Errorf("replaced key: %+v, want pending until %d", k, until)
	}
	// No key's remove_at moves past its original value plus one
	// rotation_period (docs/design-decisions.md, rollback).
	for _, o := range orig.SigningKeys {
		n, ok := after.byKid(o.Kid)
		if !ok || o.RemoveAt == 0 || n.RemoveAt == 0 {
			continue
		}
		if n.RemoveAt > o.RemoveAt+period {
			t.Errorf("rollback moved %s's remove_at from %d to %d, more than one rotation_period (%ds) later", o.Kid, o.RemoveAt, n.RemoveAt, period)
		}
	}
	e.allAccept(t, "restored key's earlier token", tokA)
	e.allAccept(t, "restored key's new token", e.sign(t, ring, a.Kid))
	e.allAccept(t, "replaced key's token", tokP)

	// A key takes part in one rollback only.
	again := env.root.write(t, e.m.p("keys/"+ring+"/rollback"), map[string]any{})
	if again.Status != http.StatusBadRequest || !again.errorsMention("rollback") {
		t.Errorf("second rollback: status %d, errors %q; want 400 saying a key already took part in a rollback", again.Status, again.Errors)
	}

	// The replaced key takes over at the end of the window, and the
	// restored key then retires with its remove_at inside the bound.
	for {
		s := e.sign(t, ring, "")
		if s.kid == p.Kid {
			if s.iat < until {
				t.Errorf("replaced key signed at %d, before the rollback window closed at %d", s.iat, until)
			}
			break
		}
		if s.iat > until {
			t.Fatalf("restored key %s still signs at %d, after %d", a.Kid, s.iat, until)
		}
		time.Sleep(250 * time.Millisecond)
	}
	final := readRing(t, e.m, ring)
	if k, _ := final.byKid(a.Kid); k.State != "retiring" || k.RemoveAt > origA.RemoveAt+period {
		t.Errorf("restored key after the window: %+v, want retiring with remove_at <= %d", k, origA.RemoveAt+period)
	}
	for _, o := range orig.SigningKeys {
		if n, ok := final.byKid(o.Kid); ok && o.RemoveAt != 0 && n.RemoveAt > o.RemoveAt+period {
			t.Errorf("%s's remove_at is %d, more than one period past its original %d", o.Kid, n.RemoveAt, o.RemoveAt)
		}
	}
	e.allAccept(t, "replaced key's token after the window", e.sign(t, ring, p.Kid))
	e.allAccept(t, "restored key's earlier token after the window", tokA)
	if again := env.root.write(t, e.m.p("keys/"+ring+"/rollback"), map[string]any{}); again.Status != http.StatusBadRequest {
		t.Errorf("rollback after the window: status %d, want 400: %s", again.Status, again.Body)
	}
}

// refuse asserts a rollback is a 400 with a message that says why, and that
// the refusal changed nothing.
func (e *emergency) refuse(t *testing.T, ring string, why ...string) {
	t.Helper()
	before := readRing(t, e.m, ring)
	resp := env.root.write(t, e.m.p("keys/"+ring+"/rollback"), map[string]any{})
	if resp.Status != http.StatusBadRequest {
		t.Fatalf("rollback: status %d, want 400: %s", resp.Status, resp.Body)
	}
	found := false
	for _, w := range why {
		found = found || resp.errorsMention(w)
	}
	if !found {
		t.Errorf("rollback refused with %q; want a message saying %q", resp.Errors, why)
	}
	after := readRing(t, e.m, ring)
	if !slices.Equal(before.SigningKeys, after.SigningKeys) {
		t.Errorf("a refused rollback changed the ring: %+v -> %+v", before.SigningKeys, after.SigningKeys)
	}
}

func (e *emergency) caseRollbackRevoked(t *testing.T) {
	const ring = "rollback-revoked"
	a, p := e.activeAndNext(t, ring)
	e.op(t, ring, "rotate", map[string]any{"force": true})
	e.op(t, ring, "revoke", map[string]any{"kid": a.Kid})
	e.watch.ban(a.Kid, time.Now())
	e.refuse(t, ring, "revoked")
	e.sign(t, ring, p.Kid)
	e.published(t, ring, []string{p.Kid}, []string{a.Kid})
}

func (e *emergency) caseRollbackRemoved(t *testing.T) {
	const ring = "rollback-removed"
	a, _ := e.activeAndNext(t, ring)
	e.op(t, ring, "rotate", map[string]any{"force": true})
	k := e.key(t, ring, a.Kid)
	if k.State != "retiring" || k.RemoveAt == 0 || k.RemoveAt-k.RetireAt != 61 {
		t.Fatalf("old key after the rotation: %+v, want retiring for verification_ttl 61s", k)
	}
	// The rollback window (retire_at + 90s) is still open when the key
	// leaves the JWKS at remove_at.
	removeAt := time.Unix(k.RemoveAt, 0)
	time.Sleep(time.Until(removeAt.Add(1500 * time.Millisecond)))
	e.watch.ban(a.Kid, time.Now())
	e.published(t, ring, nil, []string{a.Kid})
	if k, listed := readRing(t, e.m, ring).byKid(a.Kid); listed && k.State != "removed" {
		t.Errorf("key past its remove_at: %+v, want removed", k)
	}
	e.refuse(t, ring, "left the JWKS", "removed")
}

// jwksWatch fetches the mount's JWKS on a timer and remembers which kids
// were revoked or removed and when; a kid seen in a fetch that started after
// its ban is an error, and so is a fetch that fails (an error, a status
// other than 200, a body that is not a key set): a failed fetch is a check
// that did not happen. It records when each successful fetch started, so the
// test can require fetches after every ban.
type jwksWatch struct {
	m      *mount
	mu     sync.Mutex
	banned map[string]time.Time
	errs   []string
	starts []time.Time
	done   chan struct{}
}

func newJWKSWatch(m *mount) *jwksWatch {
	return &jwksWatch{m: m, banned: map[string]time.Time{}, done: make(chan struct{})}
}

func (w *jwksWatch) ban(kid string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.banned[kid]; !ok {
		w.banned[kid] = at
	}
}

func (w *jwksWatch) fail(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, fmt.Sprintf(format, args...))
}

func (w *jwksWatch) run(ctx context.Context, every time.Duration) {
	defer close(w.done)
	// A generous timeout: a slow answer is not a failure, a lost one is.
	hc := &http.Client{Timeout: 30 * time.Second}
	for ctx.Err() == nil {
		start := time.Now()
		w.fetch(ctx, hc, start)
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(start.Add(every))):
		}
	}
}

func (w *jwksWatch) fetch(ctx context.Context, hc *http.Client, start time.Time) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.root.url(w.m.p("jwks")), nil)
	if err != nil {
		w.fail("watcher: %v", err)
		return
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			w.fail("watcher: JWKS fetch at %s failed: %v", start.Format("15:04:05.000"), err)
		}
		return
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	derr := json.NewDecoder(resp.Body).Decode(&set)
	switch {
	case ctx.Err() != nil:
		return
	case resp.StatusCode != http.StatusOK:
		w.fail("watcher: JWKS fetch at %s answered %d", start.Format("15:04:05.000"), resp.StatusCode)
		return
	case derr != nil:
		w.fail("watcher: JWKS fetched at %s is not a key set: %v", start.Format("15:04:05.000"), derr)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.starts = append(w.starts, start)
	for _, k := range set.Keys {
		if at, ok := w.banned[k.Kid]; ok && start.After(at) {
			w.errs = append(w.errs, fmt.Sprintf("kid %s, gone since %s, is back in the JWKS fetched at %s", k.Kid, at.Format("15:04:05.000"), start.Format("15:04:05.000")))
		}
	}
}

func (w *jwksWatch) wait() { <-w.done }

// awaitFetchAfter waits for a successful fetch that started after at, or
// for a failed one (which the test reports).
func (w *jwksWatch) awaitFetchAfter(t *testing.T, at time.Time) {
	t.Helper()
	deadline := time.Now().Add(stallGuard)
	for w.fetchesAfter(at) == 0 && len(w.errors()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the JWKS watcher made no successful fetch in %s after %s (errors: %q)", stallGuard, at.Format("15:04:05.000"), w.errors())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *jwksWatch) bannedSince() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]time.Time{}
	for k, v := range w.banned {
		out[k] = v
	}
	return out
}

// firstBan is the earliest ban (the zero time if none).
func (w *jwksWatch) firstBan() time.Time {
	var first time.Time
	for _, at := range w.bannedSince() {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	return first
}

func (w *jwksWatch) errors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.errs)
}

func (w *jwksWatch) fetchCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.starts)
}

// fetchesAfter counts the successful fetches that started after at.
func (w *jwksWatch) fetchesAfter(at time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.starts {
		if s.After(at) {
			n++
		}
	}
	return n
}
