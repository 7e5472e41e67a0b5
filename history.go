package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/vault/sdk/logical"
)

// The mount's key history: the kids and thumbprints of keys that left its
// rings, so that an import or a trusted key can never bring back a key, or
// a kid, the mount has already let go. Keys still in a ring (tombstones
// included) are checked in the ring itself; a key is recorded here when its
// ring entry forgets it (compact, a revoked trusted key, a dropped ring),
// before that ring entry is written. A crash between the two writes leaves
// a key both here and in its ring, which refuses the same things.
//
// The record is public (kids, thumbprints, ring names and times) and
// bounded:
//
//   - adopted keys (imported or trusted) are kept forever: their private
//     halves exist, or existed, outside Vault, so whoever holds a copy could
//     present them again. A mount adopts at most maxAdopted keys over its
//     life (in its rings and here together); beyond that, import and trust
//     are refused;
//   - generated keys' private halves never leave Vault, so they cannot be
//     imported again. Their kids are kept so that no import or trust reuses
//     them while a verifier may still hold the old key: the last
//     maxHistoryRevoked revoked ones and the last maxHistoryRemoved removed
//     ones, the oldest forgotten first.
//
// At its bounds, with the longest kids and ring names, the entry stays under
// 256 KiB (a quarter of the 1 MiB entry Vault's integrated storage takes);
// a mount that adopts a few keys and revokes rarely keeps it to a few KiB.
const (
	maxAdopted        = 256
	maxHistoryRevoked = 512
	maxHistoryRemoved = 256
)

// Fates and origins of recorded keys.
const (
	fateRemoved    = "removed"
	fateRevoked    = "revoked"
	originImported = "imported"
	originTrusted  = "trusted"
)

type historyEntry struct {
	Version int             `json:"version"`
	Adopted []historyRecord `json:"adopted"`
	Revoked []historyRecord `json:"revoked"`
	Removed []historyRecord `json:"removed"`
}

// historyRecord is one key that left a ring.
type historyRecord struct {
	KID string `json:"kid"`
	// Thumbprint is set when it differs from the kid.
	Thumbprint string `json:"thumbprint,omitempty"`
	Ring       string `json:"ring"`
	// Origin is imported or trusted for adopted keys, empty for generated.
	Origin string `json:"origin,omitempty"`
	Fate   string `json:"fate"`
	At     int64  `json:"at"`
}

func (h *historyRecord) thumbprint() string {
	if h.Thumbprint != "" {
		return h.Thumbprint
	}
	return h.KID
}

func readHistory(ctx context.Context, s logical.Storage) (*historyEntry, error) {
	h := &historyEntry{}
	ok, err := getJSON(ctx, s, historyPath, h)
	if err != nil {
		return nil, err
	}
	if !ok {
		return &historyEntry{Version: schemaVersion}, nil
	}
	if err := checkVersion(historyPath, h.Version); err != nil {
		return nil, err
	}
	return h, nil
}

// records returns every record, adopted keys first.
func (h *historyEntry) records() []historyRecord {
	out := make([]historyRecord, 0, len(h.Adopted)+len(h.Revoked)+len(h.Removed))
	out = append(out, h.Adopted...)
	out = append(out, h.Revoked...)
	return append(out, h.Removed...)
}

// add records keys that left ring; it reports whether anything was new.
func (h *historyEntry) add(recs []historyRecord) bool {
	known := map[string]bool{}
	for _, r := range h.records() {
		known[r.KID] = true
	}
	changed := false
	for _, r := range recs {
		if known[r.KID] {
			continue
		}
		known[r.KID] = true
		changed = true
		switch {
		case r.Origin != "":
			h.Adopted = append(h.Adopted, r)
		case r.Fate == fateRevoked:
			h.Revoked = append(h.Revoked, r)
		default:
			h.Removed = append(h.Removed, r)
		}
	}
	if n := len(h.Revoked) - maxHistoryRevoked; n > 0 {
		h.Revoked = append([]historyRecord(nil), h.Revoked[n:]...)
	}
	if n := len(h.Removed) - maxHistoryRemoved; n > 0 {
		h.Removed = append([]historyRecord(nil), h.Removed[n:]...)
	}
	return changed
}

// maxHistoryRing bounds the ring name a record keeps (ring names have no
// bound of their own; the record names the ring for reading only).
const maxHistoryRing = 64

// departed lists the keys of old that cur no longer holds (cur nil: all of
// them), as history records at now.
func departed(old, cur *ringEntry, now int64) []historyRecord {
	if old == nil {
		return nil
	}
	ring := old.Name
	if len(ring) > maxHistoryRing {
		ring = ring[:maxHistoryRing]
	}
	still := map[string]bool{}
	if cur != nil {
		for i := range cur.Keys {
			still[cur.Keys[i].KID] = true
		}
		for i := range cur.Trusted {
			still[cur.Trusted[i].KID] = true
		}
	}
	var out []historyRecord
	for i := range old.Keys {
		k := &old.Keys[i]
		if still[k.KID] {
			continue
		}
		rec := historyRecord{KID: k.KID, Thumbprint: k.Thumbprint, Ring: ring, Fate: fateRemoved, At: now}
		if k.revoked() {
			rec.Fate, rec.At = fateRevoked, k.RevokedAt
		}
		if k.Imported {
			rec.Origin = originImported
		}
		out = append(out, rec)
	}
	for i := range old.Trusted {
		t := &old.Trusted[i]
		if still[t.KID] {
			continue
		}
		rec := historyRecord{KID: t.KID, Ring: ring, Origin: originTrusted, Fate: fateRemoved, At: min(now, t.ExpiresAt)}
		if t.Thumbprint != t.KID {
			rec.Thumbprint = t.Thumbprint
		}
		if now < t.ExpiresAt {
			// Gone before its expiry: revoked.
			rec.Fate, rec.At = fateRevoked, now
		}
		out = append(out, rec)
	}
	return out
}

// recordDeparted writes the keys of old that cur no longer holds into the
// history, before cur (or the ring's deletion) is written.
func recordDeparted(ctx context.Context, s logical.Storage, old, cur *ringEntry, now int64) error {
	recs := departed(old, cur, now)
	if len(recs) == 0 {
		return nil
	}
	h, err := readHistory(ctx, s)
	if err != nil {
		return err
	}
	if !h.add(recs) {
		return nil
	}
	h.Version = schemaVersion
	return putJSON(ctx, s, historyPath, h)
}

// identity is what names a key across the mount: its kid and its
// thumbprint.
type identity struct {
	kid, thumbprint string
}

// owner describes who holds an identifier, for a refusal.
type owner struct {
	what string // "key", "trusted key", or a history record's fate
	kid  string
	ring string
	at   int64
	gone bool
}

func (o owner) describe() string {
	if o.gone {
		return fmt.Sprintf("key %s of ring %q, %s at %s", o.kid, o.ring, o.what, fmtTime(o.at))
	}
	return fmt.Sprintf("%s %s of ring %q", o.what, o.kid, o.ring)
}

// identifiers maps every kid and thumbprint the mount holds or has let go
// to who holds it.
func identifiers(snap *snapshot, h *historyEntry) map[string]owner {
	ids := map[string]owner{}
	put := func(id string, o owner) {
		if _, ok := ids[id]; !ok {
			ids[id] = o
		}
	}
	for _, name := range slices.Sorted(maps.Keys(snap.rings)) {
		r := snap.rings[name]
		for i := range r.Keys {
			k := &r.Keys[i]
			o := owner{what: "key", kid: k.KID, ring: name}
			if k.revoked() {
				// A tombstone: gone from the JWKS already.
				o = owner{what: fateRevoked, kid: k.KID, ring: name, at: k.RevokedAt, gone: true}
			}
			put(k.KID, o)
			put(k.thumbprint(), o)
		}
		for i := range r.Trusted {
			t := &r.Trusted[i]
			o := owner{what: "trusted key", kid: t.KID, ring: name}
			put(t.KID, o)
			put(t.Thumbprint, o)
		}
	}
	for _, rec := range h.records() {
		o := owner{what: rec.Fate, kid: rec.KID, ring: rec.Ring, at: rec.At, gone: true}
		put(rec.KID, o)
		put(rec.thumbprint(), o)
	}
	return ids
}

// checkIdentity refuses a key the mount would adopt under kid when its kid
// or its thumbprint is already taken: live anywhere in the mount (another
// ring's keys, tombstones or trusted keys), or removed or revoked before.
// keyField names the field that carried the key.
func checkIdentity(snap *snapshot, h *historyEntry, id identity, keyField string) error {
	ids := identifiers(snap, h)
	if o, ok := ids[id.thumbprint]; ok {
		if o.gone {
			return refuse(keyField, "this key (thumbprint %s) is %s: a key that left the mount never comes back, under any kid", id.thumbprint, o.describe())
		}
		return refuse(keyField, "this key (thumbprint %s) is already %s; a key is published once per mount", id.thumbprint, o.describe())
	}
	if o, ok := ids[id.kid]; ok {
		if o.gone {
			return refuse("kid", "%q was the kid of %s; a kid that left the JWKS is never used again (verifiers may still hold the old key under it): choose another kid", id.kid, o.describe())
		}
		return refuse("kid", "%q is already the kid of %s; kids are unique across the mount: choose another kid", id.kid, o.describe())
	}
	adopted := len(h.Adopted)
	for _, r := range snap.rings {
		adopted += len(r.Trusted)
		for i := range r.Keys {
			if r.Keys[i].Imported {
				adopted++
			}
		}
	}
	if adopted >= maxAdopted {
		return refuse(keyField, "this mount has adopted %d keys (imported or trusted), its limit: adopted keys are remembered forever, so their number is bounded; adopt further issuers on a new mount", adopted)
	}
	return nil
}
