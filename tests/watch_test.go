package tests

import (
	"slices"
	"testing"
	"time"
)

// rotationWatch samples one ring about once a second: it reads the ring,
// signs a token, fetches the JWKS with no token, and checks every token seen
// so far against that JWKS. It remembers enough to check the lifecycle
// invariants afterwards.
type rotationWatch struct {
	t      *testing.T
	m      *mount
	ring   string
	role   string
	alg    string
	lead   int64
	maxAge int64
	start  time.Time

	tokens         []signed
	kidOrder       []string             // kids in the order they first signed
	firstToken     map[string]signed    // first token of each kid
	firstPublished map[string]time.Time // start of the first fetch that held the kid
	present        map[string]bool      // in the latest JWKS
	gone           map[string]time.Time // kids that left the JWKS, and when
	keys           map[string]signingKey
	removedState   map[string]bool // kids the ring has reported removed or revoked
	last           fetchedJWKS
	lastRing       ring
}

func newRotationWatch(t *testing.T, m *mount, ring, role, alg string, lead, maxAge int64) *rotationWatch {
	return &rotationWatch{
		t: t, m: m, ring: ring, role: role, alg: alg, lead: lead, maxAge: maxAge, start: time.Now(),
		firstToken:     map[string]signed{},
		firstPublished: map[string]time.Time{},
		present:        map[string]bool{},
		gone:           map[string]time.Time{},
		keys:           map[string]signingKey{},
		removedState:   map[string]bool{},
	}
}

// observeUntil samples until deadline.
func (w *rotationWatch) observeUntil(deadline time.Time) {
	// Stop at the first sample that finds a problem: later samples would
	// repeat it every second.
	failedBefore := w.t.Failed()
	for time.Now().Before(deadline) {
		tick := time.Now()
		w.sample()
		if !failedBefore && w.t.Failed() {
			w.t.FailNow()
		}
		time.Sleep(time.Until(tick.Add(time.Second)))
	}
}

func (w *rotationWatch) sample() {
	t := w.t
	t.Helper()

	r := readRing(t, w.m, w.ring)
	w.lastRing = r
	for _, k := range r.SigningKeys {
		if w.removedState[k.Kid] && k.State != "removed" && k.State != "revoked" {
			t.Errorf("kid %s was removed and is now %s", k.Kid, k.State)
		}
		if k.State == "removed" || k.State == "revoked" {
			w.removedState[k.Kid] = true
		}
		if k.Alg != w.alg {
			t.Errorf("kid %s has alg %s, ring is %s", k.Kid, k.Alg, w.alg)
		}
		w.keys[k.Kid] = k
	}

	s := sign(t, w.m, w.role, map[string]any{})
	if n := len(w.kidOrder); n > 0 && w.kidOrder[n-1] != s.Kid {
		if _, seen := w.firstToken[s.Kid]; seen {
			t.Errorf("kid %s signs again after %s took over", s.Kid, w.kidOrder[n-1])
		}
	}
	if _, seen := w.firstToken[s.Kid]; !seen {
		w.kidOrder = append(w.kidOrder, s.Kid)
		w.firstToken[s.Kid] = s
	}
	w.tokens = append(w.tokens, s)

	fetchStart := time.Now()
	f := fetchJWKS(t, w.m, "jwks")
	fetchEnd := time.Now()
	w.last = f
	maxAge := checkJWKSCaching(t, "jwks", f.Resp, w.maxAge, w.lead)
	if next := w.nextRemoval(f); next > 0 {
		// max-age must not outlast the next removal; 1 is the floor.
		until := max(next-fetchStart.Unix(), 1)
		if maxAge > until+1 {
			t.Errorf("max-age=%d but the next removal is in %ds", maxAge, until)
		}
	}
	w.track(f, fetchStart)

	if err := w.verify(s, f); err != nil {
		t.Errorf("fresh token of kid %s does not verify against the JWKS fetched right after: %v", s.Kid, err)
	}

	// One token of every key must verify until its key's remove_at, and
	// must not once the key is gone. Within a second of remove_at either
	// is right.
	for _, kid := range w.kidOrder {
		tok := w.firstToken[kid]
		rm := w.keys[kid].RemoveAt
		switch {
		case rm == 0 || fetchEnd.Before(time.Unix(rm-1, 0)):
			if err := w.verify(tok, f); err != nil {
				t.Errorf("kid %s (remove_at %d, now %d): token no longer verifies: %v", kid, rm, fetchEnd.Unix(), err)
			}
		case fetchStart.After(time.Unix(rm+1, 0)):
			if f.has(kid) {
				t.Errorf("kid %s still published %ds after its remove_at", kid, fetchStart.Unix()-rm)
			}
			if err := w.verify(tok, f); err == nil {
				t.Errorf("kid %s: token still verifies after its key's remove_at", kid)
			}
		}
	}
}

// nextRemoval is the earliest remove_at of a published key, or 0.
func (w *rotationWatch) nextRemoval(f fetchedJWKS) int64 {
	var next int64
	for _, kid := range f.kids() {
		if rm := w.keys[kid].RemoveAt; rm > 0 && (next == 0 || rm < next) {
			next = rm
		}
	}
	return next
}

// track records when kids enter and leave the JWKS. A kid that left must
// never come back.
func (w *rotationWatch) track(f fetchedJWKS, at time.Time) {
	now := map[string]bool{}
	for _, kid := range f.kids() {
		now[kid] = true
		if when, ok := w.gone[kid]; ok {
			w.t.Errorf("kid %s left the JWKS at %s and is back", kid, when.Format(time.TimeOnly))
		}
		if _, ok := w.firstPublished[kid]; !ok {
			w.firstPublished[kid] = at
		}
	}
	for kid := range w.present {
		if !now[kid] {
			w.gone[kid] = at
		}
	}
	w.present = now
}

// verify checks a token with both libraries, at the time it was issued so
// that a short ttl does not hide what the keys do.
func (w *rotationWatch) verify(s signed, f fetchedJWKS) error {
	if _, _, err := verifyWithJose(s.Token, f.Set, w.alg); err != nil {
		return err
	}
	_, err := verifyWithGolangJWT(s.Token, f.Set, expectation{
		Alg: w.alg, Issuer: w.m.issuer, Audience: apiAudience, Subject: env.entityID,
		At: time.Unix(s.IssuedAt, 0),
	})
	return err
}

// checkLifecycle asserts what the whole run shows about the schedule.
func (w *rotationWatch) checkLifecycle(forcedKid string, ttl int64) {
	t := w.t
	t.Helper()
	const slack = 3 * time.Second // one sampling period plus rounding to seconds

	for _, kid := range w.kidOrder {
		if kid == forcedKid {
			continue
		}
		k := w.keys[kid]
		if k.ActivateAt-k.PublishAt < w.lead {
			t.Errorf("kid %s: activate_at - publish_at = %ds, less than publish_lead %ds", kid, k.ActivateAt-k.PublishAt, w.lead)
		}
		// Only keys whose whole lead fell inside the watch can be judged
		// from the outside.
		first := w.firstToken[kid].At
		if first.Sub(w.start) < time.Duration(w.lead)*time.Second+slack {
			continue
		}
		pub, ok := w.firstPublished[kid]
		if !ok {
			t.Errorf("kid %s signed but was never seen in the JWKS", kid)
			continue
		}
		if got := first.Sub(pub); got < time.Duration(w.lead)*time.Second-slack {
			t.Errorf("kid %s signed %s after it was first seen in the JWKS, publish_lead is %ds", kid, got.Round(time.Millisecond), w.lead)
		}
	}

	for _, s := range w.tokens {
		k := w.keys[s.Kid]
		if got := s.ExpiresAt - s.IssuedAt; got != ttl {
			t.Errorf("token of kid %s: exp - iat = %d, want ttl %d", s.Kid, got, ttl)
		}
		if k.RemoveAt != 0 && s.ExpiresAt > k.RemoveAt-60 {
			t.Errorf("token of kid %s expires at %d, later than its key's remove_at %d - 60", s.Kid, s.ExpiresAt, k.RemoveAt)
		}
		// Exactness: the key that signed is the one whose [activate_at,
		// retire_at) holds iat, except within a second of a boundary.
		var scheduled []string
		nearBoundary := false
		for _, c := range w.keys {
			if c.ActivateAt == 0 {
				continue
			}
			if abs(s.IssuedAt-c.ActivateAt) <= 1 || (c.RetireAt != 0 && abs(s.IssuedAt-c.RetireAt) <= 1) {
				nearBoundary = true
			}
			if c.ActivateAt <= s.IssuedAt && (c.RetireAt == 0 || s.IssuedAt < c.RetireAt) {
				scheduled = append(scheduled, c.Kid)
			}
		}
		if !nearBoundary && (len(scheduled) != 1 || scheduled[0] != s.Kid) {
			t.Errorf("token issued at %d signed by %s; the stored schedule says %v", s.IssuedAt, s.Kid, scheduled)
		}
	}
	if !slices.Contains(w.kidOrder, forcedKid) {
		t.Errorf("the forced key %s never signed; kids in order: %v", forcedKid, w.kidOrder)
	}
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}
