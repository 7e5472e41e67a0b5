package jwtrotor

import (
	"maps"
	"slices"
	"sort"
)

// Bounds on what a ring and a mount publish and store. A ring's own
// schedule publishes at most ringProjection keys at once (26 at the most,
// for a 10 s period); forced rotations, algorithm changes and rollbacks add
// keys beyond it, and are refused with a 400 when the ring or the mount
// would pass a bound. Revocations are never refused: they leave behind only
// tombstones, and at most maxTombstones of them.
const (
	// maxRingKeys bounds the keys one ring publishes at once.
	maxRingKeys = 40
	// maxTombstones bounds the revoked keys a ring keeps for reads.
	maxTombstones = 32
	// maxRingEntryBytes bounds a stored ring entry: maxRingKeys RSA-4096
	// keys with notes of maxGateNote bytes and maxTombstones tombstones fit
	// (TestRingEntryBoundHolds), far below the 1 MiB entry limit of
	// Vault's integrated storage.
	maxRingEntryBytes = 96 * 1024
	// maxGateNote bounds the activation gate's note on a key.
	maxGateNote = 256
	// maxJWKSBytes bounds the mount's JWKS.
	maxJWKSBytes = 50 * 1024
	// maxTrustedKeys bounds the trusted keys of one ring: an issuer being
	// adopted has a few old keys with tokens still out. They also count
	// against maxRingKeys and maxJWKSBytes while published.
	maxTrustedKeys = 10
	// maxTrustPeriodSeconds bounds how long a trusted key stays published: long
	// enough for the tokens a legacy issuer gave out (a month's lifetime
	// and then some), short enough that a forgotten one goes by itself.
	maxTrustPeriodSeconds = int64(90 * 24 * 3600)
	// maxPublishers bounds the publishers of a mount: each is written to on
	// every change of the key set it publishes.
	maxPublishers = 16
)

// keyBytes is what key k adds to a JWKS: its JWK and a separator.
func keyBytes(k *signingKey) int {
	if k.planned() {
		return jwkSize(k.Alg, k.rsaBits) + 1
	}
	return len(k.PublicJWK) + 1
}

// span is a key's publication from one instant (inclusive) to another
// (exclusive), with its size.
type span struct {
	from, to int64
	bytes    int
}

// maxPeakKeys bounds the future keys peak simulates; beyond it the stored
// keys are long gone and the schedule repeats.
const maxPeakKeys = 1000

// peak returns the most keys, and the most bytes, r will publish at any
// instant from now on if no operation intervenes: its keys as they stand,
// its trusted keys until they expire, and the keys maintenance will add,
// stocked as early as it can (which publishes the most at once). The gate's
// delays are not included: they delay activations by at most one period,
// which reserve allows for.
func peak(r *ringEntry, now int64) (int, int) {
	sched := r.schedule()
	spans := trustedSpans(r, now)
	last, lastIdx := int64(0), -1
	for i := range r.Keys {
		k := &r.Keys[i]
		if k.revoked() || k.removeAt() <= now {
			continue
		}
		if k.RetireAt == 0 {
			last, lastIdx = k.ActivateAt, i
			continue
		}
		spans = append(spans, span{max(k.PublishAt, now), k.RemoveAt, keyBytes(k)})
	}
	size := jwkSize(r.Algorithm, r.RSABits) + 1
	if r.DeletedAt != 0 || lastIdx < 0 {
		// Nothing will be stocked (a draining ring), or no live key.
		if lastIdx >= 0 {
			spans = append(spans, span{max(r.Keys[lastIdx].PublishAt, now), forever, keyBytes(&r.Keys[lastIdx])})
		}
		return sweep(spans, now)
	}
	// Future keys: the key for the slot after last is made as soon as last
	// falls within the stocking horizon, and activates a period after last
	// (or a lead after it is made); each retires at its successor's
	// activation and stays published for the overlap after. Stored keys are
	// all published already, so their count only falls from now on, while
	// the future keys' count reaches its steady level within one steady
	// window: two windows of future keys include the peak.
	prevFrom, prevOverlap, prevBytes := max(r.Keys[lastIdx].PublishAt, now), r.Keys[lastIdx].Overlap, keyBytes(&r.Keys[lastIdx])
	steady := 2*sched.RotationPeriod + sched.PublishLead + 2*maintenanceTickSeconds + sched.VerificationTTL
	for n := 0; ; n++ {
		made := max(now, last-sched.PublishLead-2*maintenanceTickSeconds)
		slot := max(made+sched.PublishLead, last+sched.RotationPeriod)
		spans = append(spans, span{prevFrom, slot + prevOverlap, prevBytes})
		prevFrom, prevOverlap, prevBytes = made, sched.VerificationTTL, size
		last = slot
		if made > now+2*steady || n == maxPeakKeys {
			break
		}
	}
	return sweep(spans, now)
}

// trustedSpans are the publications of r's trusted keys from now on.
func trustedSpans(r *ringEntry, now int64) []span {
	var spans []span
	for i := range r.Trusted {
		t := &r.Trusted[i]
		spans = append(spans, span{max(t.AddedAt, now), t.ExpiresAt, len(t.PublicJWK) + 1})
	}
	return spans
}

// trustedBytes is what r's trusted keys add to a JWKS from now on, at most.
func trustedBytes(r *ringEntry, now int64) int {
	n := 0
	for i := range r.Trusted {
		if t := &r.Trusted[i]; t.ExpiresAt > now {
			n += len(t.PublicJWK) + 1
		}
	}
	return n
}

// sweep returns the most spans, and bytes, that overlap at any instant at
// or after now.
func sweep(spans []span, now int64) (int, int) {
	type event struct {
		at    int64
		delta int
		bytes int
	}
	events := make([]event, 0, 2*len(spans))
	for _, s := range spans {
		if s.to <= s.from || s.to <= now {
			continue
		}
		events = append(events, event{s.from, 1, s.bytes}, event{s.to, -1, -s.bytes})
	}
	// At one instant, removals come first: a span ends before its end.
	sort.Slice(events, func(i, j int) bool {
		if events[i].at != events[j].at {
			return events[i].at < events[j].at
		}
		return events[i].delta < events[j].delta
	})
	n, b, maxN, maxB := 0, 0, 0, 0
	for _, e := range events {
		n += e.delta
		b += e.bytes
		maxN, maxB = max(maxN, n), max(maxB, b)
	}
	return maxN, maxB
}

// ringProjection is the most keys a ring's schedule publishes at once in
// steady state, with one key to spare: pending keys up to the lead plus two
// ticks ahead, the active key, and retiring keys for the overlap.
func ringProjection(r *ringEntry) int {
	p := r.RotationPeriod
	return int((r.PublishLead+2*maintenanceTickSeconds+p-1)/p + 1 + 1 + (r.VerificationTTL+p-1)/p + 1)
}

// largestKey is the size of the largest key r publishes or will make.
func largestKey(r *ringEntry, now int64) int {
	n := jwkSize(r.Algorithm, r.RSABits) + 1
	for i := range r.Keys {
		if k := &r.Keys[i]; !k.revoked() && k.removeAt() > now {
			n = max(n, keyBytes(k))
		}
	}
	return n
}

// reserve is the share of the mount's JWKS bound a ring holds: its
// projection at its largest key size plus its trusted keys, or its peak plus
// one key for the gate when that is more. A deleted ring holds what it still
// publishes.
func reserve(r *ringEntry, now int64) int {
	_, bytes := peakWithRevocation(r, now)
	if r.DeletedAt != 0 {
		return bytes
	}
	largest := largestKey(r, now)
	return max(ringProjection(r)*largest+trustedBytes(r, now), bytes+largest)
}

// peakWithRevocation is peak, or, when higher, the peak after a revocation
// of r's active key now. A revocation is never refused, and it restarts the
// schedule from now: the pending keys of a shorter period than the one the
// active key was made under are then stocked while the keys of before are
// still published. A write leaves room for it, so that no revocation takes
// a ring past a bound.
func peakWithRevocation(r *ringEntry, now int64) (int, int) {
	keys, bytes := peak(r, now)
	a := activeIndex(r.Keys, now)
	if r.DeletedAt != 0 || a < 0 {
		return keys, bytes
	}
	c := r.clone()
	if _, err := revokeOp(c, now, c.Keys[a].KID); err != nil {
		return keys, bytes
	}
	planStock(c, now)
	settle(c, now)
	k, b := peak(c, now)
	return max(keys, k), max(bytes, b)
}

// checkBounds refuses a write that would let ring r publish more than
// maxRingKeys keys at once, or the mount's JWKS pass maxJWKSBytes. field
// names what the caller changed, for the message.
func checkBounds(snap *snapshot, r *ringEntry, now int64, field string) error {
	keys, _ := peakWithRevocation(r, now)
	if keys > maxRingKeys {
		return refuse(field, "ring %q would publish %d keys at once, above the limit of %d (forced rotations, algorithm changes and trusted keys each keep an extra key published until it leaves the JWKS, and a revocation of the active key, never refused, restarts the schedule from then); retry after %s, when the next key leaves the JWKS, or let the schedule rotate",
			r.Name, keys, maxRingKeys, fmtTime(ringNextRemoval(r, now)))
	}
	total := 0
	for _, n := range slices.Sorted(maps.Keys(snap.rings)) {
		if n != r.Name {
			total += reserve(snap.rings[n], now)
		}
	}
	mine := reserve(r, now)
	if total+mine > maxJWKSBytes {
		return refuse(field, "ring %q would need up to %d bytes of the mount's JWKS, which would reach %d bytes, above the %d-byte bound verifiers can rely on; use a smaller key (ES256 or EdDSA, or fewer rsa_bits), a longer rotation_period or a shorter verification_ttl/publish_lead, or retry after %s, when the next key leaves the JWKS",
			r.Name, mine, total+mine, maxJWKSBytes, fmtTime(ringNextRemoval(r, now)))
	}
	if len(snap.publishers) == 0 {
		return nil
	}
	return checkProfiles(snap.publishers, withRing(snap.rings, r), snap.config.Issuer, now, field)
}

// withRing is rings with r in place of the stored ring of its name.
func withRing(rings map[string]*ringEntry, r *ringEntry) map[string]*ringEntry {
	out := maps.Clone(rings)
	if out == nil {
		out = map[string]*ringEntry{}
	}
	out[r.Name] = r
	return out
}
