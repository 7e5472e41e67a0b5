package jwtrotor

import (
	"testing"
)

// opRing is a ring of four keys on a 100 s period with a 20 s lead: K0
// retired at 100, K1 active until 200, K2 and K3 pending for 200 and 300,
// all published at 0.
func opRing() *ringEntry {
	r := &ringEntry{Name: "r", Algorithm: "EdDSA", RotationPeriod: 100, PublishLead: 20, VerificationTTL: 150}
	for i, at := range []int64{0, 100, 200, 300} {
		r.Keys = append(r.Keys, signingKey{KID: string(rune('A' + i)), Alg: "EdDSA", PublicJWK: []byte("{}"),
			ActivateAt: at, Lead: 20, Overlap: 150, HasPrivate: true})
	}
	chain(r.Keys, 0)
	return r
}

func activation(r *ringEntry, kid string) int64 {
	for _, k := range r.Keys {
		if k.KID == kid {
			return k.ActivateAt
		}
	}
	return -1
}

// The pure operations rewrite only the future: revoking the next pending key
// gives its slot to the key after it, revoking a later one closes the gap
// behind the key before it, revoking the active key promotes the next at
// once, recorded as forced when its lead is not met.
func TestRevokeOpSlots(t *testing.T) {
	t.Parallel()
	const now = 150
	r := opRing()
	res, err := revokeOp(r, now, "C")
	if err != nil || res.Revoked != "C" {
		t.Fatalf("revoke C: %v %+v", err, res)
	}
	if got := activation(r, "D"); got != 200 {
		t.Fatalf("revoking the next pending key: D activates at %d, want its slot 200", got)
	}

	r = opRing()
	revokeOp(r, now, "D")
	if got := activation(r, "C"); got != 200 {
		t.Fatalf("revoking a later pending key moved C to %d", got)
	}

	r = opRing()
	res, _ = revokeOp(r, now, "B")
	k := r.Keys[2]
	if res.PromotedKID != "C" || k.ActivateAt != now || k.Forced {
		t.Fatalf("revoking the active key: promoted %q at %d forced=%v (published at 0, lead met)", res.PromotedKID, k.ActivateAt, k.Forced)
	}
	if got := activation(r, "D"); got != now+100 {
		t.Fatalf("the key after the promoted one activates at %d, want a period later (%d)", got, now+100)
	}

	r = opRing()
	r.Keys[2].PublishAt = now - 5 // published 5 s ago: lead not met
	revokeOp(r, now, "B")
	if !r.Keys[2].Forced {
		t.Fatal("a key promoted before its lead must be recorded as forced")
	}

	r = opRing()
	if _, err := revokeOp(r, now, "nope"); !isRefusal(err) {
		t.Fatalf("an unknown kid: %v, want a refusal", err)
	}
	if res, _ := revokeOp(opRing(), now, "A"); res.Noop {
		t.Fatal("revoking a retiring key is not a no-op")
	}
}

// rotate never moves an activation later than scheduled, and a mismatched
// expected_active_kid changes nothing.
func TestRotateOp(t *testing.T) {
	t.Parallel()
	const now = 150
	r := opRing()
	res := rotateOp(r, now, false, false, "nope")
	if !res.Noop || activation(r, "C") != 200 {
		t.Fatalf("a mismatched expected_active_kid: %+v", res)
	}
	r = opRing()
	r.PublishLead = 500 // raised since C was scheduled
	res = rotateOp(r, now, false, false, "")
	if res.ActivatesAt != 200 || r.Keys[2].Lead != 20 {
		t.Fatalf("rotate after the lead was raised: activates at %d with lead %d, want 200 and the lead it was scheduled with", res.ActivatesAt, r.Keys[2].Lead)
	}
	r = opRing()
	res = rotateOp(r, now, true, true, "B")
	if res.ActivatesAt != now || res.Revoked != "B" || r.Keys[1].RevokedAt != now {
		t.Fatalf("rotate revoke_active: %+v", res)
	}
}
