package jwtrotor

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Tests of history.go: what the mount remembers of keys that left it, and
// the identities an adopted key may not take.

// departed records a key that left a ring with its fate: revoked at its
// revocation, removed when the write dropped it, a trusted key revoked
// when it left before its expiry; keys still held are not recorded.
func TestDepartedFates(t *testing.T) {
	t.Parallel()
	old := &ringEntry{Name: "k", Keys: []signingKey{
		{KID: "kept"},
		{KID: "removed"},
		{KID: "revoked", RevokedAt: 70},
		{KID: "imported", Thumbprint: "tp-imported", Imported: true},
	}, Trusted: []trustedKey{
		{KID: "expired", Thumbprint: "expired", ExpiresAt: 90},
		{KID: "dropped", Thumbprint: "tp-dropped", ExpiresAt: 500},
	}}
	cur := &ringEntry{Name: "k", Keys: []signingKey{{KID: "kept"}}}
	got := map[string]historyRecord{}
	for _, rec := range departed(old, cur, 100) {
		got[rec.KID] = rec
	}
	want := map[string]historyRecord{
		"removed":  {KID: "removed", Ring: "k", Fate: fateRemoved, At: 100},
		"revoked":  {KID: "revoked", Ring: "k", Fate: fateRevoked, At: 70},
		"imported": {KID: "imported", Thumbprint: "tp-imported", Ring: "k", Origin: originImported, Fate: fateRemoved, At: 100},
		"expired":  {KID: "expired", Ring: "k", Origin: originTrusted, Fate: fateRemoved, At: 90},
		"dropped":  {KID: "dropped", Thumbprint: "tp-dropped", Ring: "k", Origin: originTrusted, Fate: fateRevoked, At: 100},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("departed\n got %+v\nwant %+v", got, want)
	}
	if departed(nil, cur, 100) != nil {
		t.Fatal("a new ring has no departed keys")
	}
}

// checkIdentity refuses a kid or a thumbprint the mount holds (a key, a
// tombstone or a trusted key of any ring) or has let go of, naming who
// holds it, and lets a new one through.
func TestCheckIdentityNamesTheHolder(t *testing.T) {
	t.Parallel()
	snap := &snapshot{rings: map[string]*ringEntry{
		"a": {Name: "a", Keys: []signingKey{{KID: "live", Thumbprint: "tp-live"}, {KID: "tomb", RevokedAt: 50}}},
		"b": {Name: "b", Trusted: []trustedKey{{KID: "old", Thumbprint: "tp-old", AddedAt: 10, ExpiresAt: 1000}}},
	}}
	h := &historyEntry{Revoked: []historyRecord{{KID: "gone", Ring: "c", Fate: fateRevoked, At: 40}}}
	for _, c := range []struct {
		id    identity
		field string
		frags []string
	}{
		{identity{kid: "live", thumbprint: "x1"}, "kid", []string{`"live" is already the kid of key live of ring "a"`}},
		{identity{kid: "n1", thumbprint: "tp-live"}, "jwk", []string{"thumbprint tp-live", `key live of ring "a"`, "published once"}},
		{identity{kid: "tomb", thumbprint: "x2"}, "kid", []string{`key tomb of ring "a", revoked at`, "never used again"}},
		{identity{kid: "n2", thumbprint: "tp-old"}, "jwk", []string{`trusted key old of ring "b"`}},
		{identity{kid: "gone", thumbprint: "x3"}, "kid", []string{`key gone of ring "c", revoked at`}},
		{identity{kid: "n3", thumbprint: "gone"}, "jwk", []string{"never comes back"}},
	} {
		err := checkIdentity(snap, h, c.id, "jwk")
		var fe *fieldError
		if !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want a refusal of %s", c.id, err, c.field)
			continue
		}
		for _, f := range c.frags {
			if !strings.Contains(fe.Msg, f) {
				t.Errorf("%+v: %q does not say %q", c.id, fe.Msg, f)
			}
		}
	}
	if err := checkIdentity(snap, h, identity{kid: "new", thumbprint: "tp-new"}, "jwk"); err != nil {
		t.Fatalf("a new key: %v", err)
	}
}

// The history keeps every adopted key and the last maxHistoryRevoked
// revoked and maxHistoryRemoved removed generated keys, oldest forgotten
// first; at its bounds, with the longest kids and ring names, the entry
// stays under 256 KiB.
func TestHistoryBoundHolds(t *testing.T) {
	t.Parallel()
	h := &historyEntry{Version: schemaVersion}
	big := int64(1) << 62
	ring := strings.Repeat("r", 5000)
	old := &ringEntry{Name: ring}
	for i := 0; i < maxAdopted; i++ {
		kid := fmt.Sprintf("%0*d", maxKIDLen, i)
		old.Keys = append(old.Keys, signingKey{KID: kid, Thumbprint: strings.Repeat("t", 43), Imported: true, RevokedAt: big})
	}
	for i := 0; i < 2*maxHistoryRevoked; i++ {
		old.Keys = append(old.Keys, signingKey{KID: fmt.Sprintf("rev-%039d", i), RevokedAt: big})
	}
	for i := 0; i < 2*maxHistoryRemoved; i++ {
		old.Keys = append(old.Keys, signingKey{KID: fmt.Sprintf("rem-%039d", i)})
	}
	h.add(departed(old, nil, big))
	if len(h.Adopted) != maxAdopted || len(h.Revoked) != maxHistoryRevoked || len(h.Removed) != maxHistoryRemoved {
		t.Fatalf("kept %d adopted, %d revoked, %d removed", len(h.Adopted), len(h.Revoked), len(h.Removed))
	}
	if h.Revoked[0].KID != fmt.Sprintf("rev-%039d", maxHistoryRevoked) || h.Removed[0].KID != fmt.Sprintf("rem-%039d", maxHistoryRemoved) {
		t.Fatalf("the oldest were not forgotten first: %s, %s", h.Revoked[0].KID, h.Removed[0].KID)
	}
	if len(h.Adopted[0].Ring) != maxHistoryRing {
		t.Fatalf("a record keeps a ring name of %d bytes", len(h.Adopted[0].Ring))
	}
	b, _ := json.Marshal(h)
	t.Logf("the history at its bounds: %d bytes", len(b))
	if len(b) > 256*1024 {
		t.Fatalf("the history at its bounds is %d bytes, above 256 KiB", len(b))
	}
	// Recording keys it holds again (a retried write) changes nothing.
	again := &ringEntry{Name: ring, Keys: append(append([]signingKey(nil), old.Keys[:3]...), old.Keys[len(old.Keys)-3:]...)}
	if h.add(departed(again, nil, big)) {
		t.Fatal("recording known keys again changed the history")
	}
}
