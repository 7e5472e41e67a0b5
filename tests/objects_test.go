package tests

import (
	"testing"
	"time"
)

// signingKey is one entry of `keys/<name>` signing_keys. Times are Unix
// seconds; 0 means not scheduled.
type signingKey struct {
	Kid        string
	Alg        string
	State      string
	PublishAt  int64
	ActivateAt int64
	RetireAt   int64
	RemoveAt   int64
	RevokedAt  int64
}

// ring is the part of a `keys/<name>` read the tests look at.
type ring struct {
	Data         map[string]any
	SigningKeys  []signingKey
	NextRotation int64
}

func (r ring) byKid(kid string) (signingKey, bool) {
	for _, k := range r.SigningKeys {
		if k.Kid == kid {
			return k, true
		}
	}
	return signingKey{}, false
}

// inState returns the keys in one state.
func (r ring) inState(state string) []signingKey {
	var out []signingKey
	for _, k := range r.SigningKeys {
		if k.State == state {
			out = append(out, k)
		}
	}
	return out
}

// nextPending is the pending key that activates first.
func (r ring) nextPending() (signingKey, bool) {
	var next signingKey
	found := false
	for _, k := range r.inState("pending") {
		if !found || k.ActivateAt < next.ActivateAt {
			next, found = k, true
		}
	}
	return next, found
}

func readRing(t testing.TB, m *mount, name string) ring {
	t.Helper()
	resp := env.root.mustRead(t, m.p("keys/"+name))
	if _, ok := resp.Data["signing_keys"].([]any); !ok {
		t.Fatalf("keys/%s: signing_keys is %T, want a list: %s", name, resp.Data["signing_keys"], resp.Body)
	}
	r := ringFromData(t, name, resp.Data)
	// Exactly one key signs, except in a new ring whose first key is still
	// serving its lead.
	switch n := len(r.inState("active")); {
	case n > 1:
		t.Fatalf("keys/%s has %d active keys, want exactly 1: %+v", name, n, r.SigningKeys)
	case n == 0 && len(r.inState("pending")) != len(r.SigningKeys):
		t.Fatalf("keys/%s has no active key: %+v", name, r.SigningKeys)
	}
	return r
}

// createRing writes keys/<name> and forces its first key active, the way an
// operator starts a ring that must sign at once. It returns the active kid.
func createRing(t testing.TB, m *mount, name string, settings map[string]any) string {
	t.Helper()
	env.root.mustWrite(t, m.p("keys/"+name), settings)
	before := readRing(t, m, name)
	if len(before.inState("active")) != 0 {
		t.Fatalf("keys/%s: a new ring must not sign before its lead, but has an active key: %+v", name, before.SigningKeys)
	}
	if len(before.inState("pending")) == 0 {
		t.Fatalf("keys/%s: a new ring must publish a pending key: %+v", name, before.SigningKeys)
	}

	resp := env.root.mustWrite(t, m.p("keys/"+name+"/rotate"), map[string]any{"force": true})
	if len(resp.Warnings) == 0 {
		t.Errorf("keys/%s/rotate force=true: no warning, want one saying the lead was skipped", name)
	}
	if !boolean(t, resp.Data, "rotated") {
		t.Fatalf("keys/%s/rotate force=true: rotated=false: %s", name, resp.Body)
	}
	kid := str(t, resp.Data, "active_kid")
	after := readRing(t, m, name)
	active := after.inState("active")
	if len(active) != 1 || active[0].Kid != kid {
		t.Fatalf("keys/%s: after force rotate active keys are %+v, want %s", name, active, kid)
	}
	if _, ok := after.nextPending(); !ok {
		t.Fatalf("keys/%s: after rotate no pending key is published: %+v", name, after.SigningKeys)
	}
	return kid
}

func createRole(t testing.TB, m *mount, name string, settings map[string]any) {
	t.Helper()
	env.root.mustWrite(t, m.p("roles/"+name), settings)
}

// signed is a sign response.
type signed struct {
	Token     string
	Kid       string
	JTI       string
	IssuedAt  int64
	ExpiresAt int64
	// At is when the test received it.
	At time.Time
}

// sign signs on a role with the userpass token, whose entity is the default
// subject.
func sign(t testing.TB, m *mount, role string, body map[string]any) signed {
	t.Helper()
	resp := env.signer.mustWrite(t, m.p("sign/"+role), body)
	return signed{
		Token:     str(t, resp.Data, "token"),
		Kid:       str(t, resp.Data, "kid"),
		JTI:       str(t, resp.Data, "jti"),
		IssuedAt:  integer(t, resp.Data, "issued_at"),
		ExpiresAt: integer(t, resp.Data, "expires_at"),
		At:        time.Now(),
	}
}

// ringFromData decodes a keys/<name> read.
func ringFromData(t testing.TB, name string, data map[string]any) ring {
	t.Helper()
	r := ring{Data: data}
	if v, ok := data["next_rotation"]; ok {
		r.NextRotation = asInt(t, "next_rotation", v)
	}
	items, _ := data["signing_keys"].([]any)
	for _, it := range items {
		d, ok := it.(map[string]any)
		if !ok {
			t.Fatalf("keys/%s: signing key entry is %T", name, it)
		}
		r.SigningKeys = append(r.SigningKeys, signingKey{
			Kid:        str(t, d, "kid"),
			Alg:        str(t, d, "alg"),
			State:      str(t, d, "state"),
			PublishAt:  integer(t, d, "publish_at"),
			ActivateAt: integer(t, d, "activate_at"),
			RetireAt:   integer(t, d, "retire_at"),
			RemoveAt:   integer(t, d, "remove_at"),
			RevokedAt:  integer(t, d, "revoked_at"),
		})
	}
	return r
}
