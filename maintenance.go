package jwtrotor

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/vault/sdk/logical"
)

// periodic is Vault's PeriodicFunc, called about once a minute on the active
// node. It never decides when a key signs or leaves the JWKS (the stored
// timestamps do, to the second); it only keeps the pipeline stocked, deletes
// private halves no longer needed, and forgets removed keys.
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	if !b.WriteSafeReplicationState() {
		// Performance standbys and secondaries read what the primary writes.
		return nil
	}
	return b.maintain(ctx, req.Storage)
}

// maintain runs one maintenance pass over every ring.
func (b *backend) maintain(ctx context.Context, s logical.Storage) error {
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, clk, err := b.state(ctx, s)
	if err != nil {
		b.metrics.maintenanceErr.WithLabelValues(mountWide).Inc()
		return fmt.Errorf("maintenance: %w", err)
	}
	now := clk.Schedule
	defer func() { b.lastPass = now }()
	gate := b.gateOf(snap, now)
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(snap.rings)) {
		if err := b.maintainRing(ctx, s, snap.rings[name], now, gate); err != nil {
			if errors.Is(err, logical.ErrReadOnly) {
				return err
			}
			b.log().Error("maintenance failed", "ring", name, "error", err)
			b.metrics.maintenanceErr.WithLabelValues(name).Inc()
			errs = append(errs, err)
		}
	}
	if err := b.retryDeletes(ctx, s); err != nil {
		b.metrics.maintenanceErr.WithLabelValues(mountWide).Inc()
		errs = append(errs, err)
	}
	if err := b.sweepDeletedRings(ctx, s, snap); err != nil {
		b.metrics.maintenanceErr.WithLabelValues(mountWide).Inc()
		errs = append(errs, err)
	}
	// Persist the high-water mark so a restart after a clock step back
	// never derives state from an earlier time.
	if err := putJSON(ctx, s, clockPath, &clockEntry{Version: schemaVersion, HighWater: now}); err != nil {
		b.metrics.maintenanceErr.WithLabelValues(mountWide).Inc()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *backend) maintainRing(ctx context.Context, s logical.Storage, old *ringEntry, now int64, gate func(r *ringEntry) coverage) error {
	r := old.clone()
	b.noteActivations(r, now)
	b.applyGate(r, now, gate)
	if r.DeletedAt != 0 && !ringPublished(r, now) {
		b.log().Info("deleted key ring drained", "ring", r.Name)
		_, err := b.dropRing(ctx, s, r, now)
		return err
	}
	stocked := planStock(r, now)
	forgotten := settle(r, now)
	for _, kid := range forgotten {
		for i := range old.Keys {
			if k := &old.Keys[i]; k.KID == kid && !k.revoked() {
				b.log().Info("key removed from the JWKS", "ring", r.Name, "kid", kid, "remove_at", fmtTime(k.RemoveAt))
			}
		}
	}
	// Write only if something changed, counting the private halves the
	// commit would release.
	probe := r.clone()
	releasePrivates(probe, now)
	if stocked > 0 || probe.LastRemoval != old.LastRemoval || !sameKeys(old.Keys, probe.Keys) {
		_, generated, err := b.commitRing(ctx, s, old, r, now)
		if err != nil {
			return err
		}
		for _, g := range generated {
			b.log().Info("pending key generated", "ring", r.Name, "kid", g.KID, "alg", g.Alg)
		}
	}
	if !b.swept(r.Name) {
		if err := b.sweepOrphans(ctx, s, r); err != nil {
			return err
		}
		b.markSwept(r.Name)
	}
	return nil
}

// gateOf is what the activation gate reads in one pass at now: the
// coverage of a ring under the one rule (coverageOf), over the last hour.
// The tracker is copied only if some ring's gate needs it.
func (b *backend) gateOf(snap *snapshot, now int64) func(r *ringEntry) coverage {
	views := sync.OnceValue(func() []clientView {
		v, _ := b.tracker.snapshot(snap.declared)
		return v
	})
	return func(r *ringEntry) coverage {
		return coverageOf(views(), snap.config, r, now, defaultVerifierWindowSeconds)
	}
}

// mountWide labels maintenance failures that concern no single ring.
const mountWide = "(mount)"

// gateHorizonSeconds: maintenance decides on activations due within two
// ticks, so a decision is always stored before the activation it concerns.
const gateHorizonSeconds = 2 * maintenanceTickSeconds

// applyGate delays the next activation while too few declared verifiers
// hold the pending key, never past its original time plus
// max_activation_delay, and lets it go as soon as they do. The decision is a
// rewrite of timestamps like any other; chain and reschedule keep lead,
// overlap and the order of the keys after it.
func (b *backend) applyGate(r *ringEntry, now int64, gate func(r *ringEntry) coverage) bool {
	if r.DeletedAt != 0 || r.MinVerifierCoverage <= 0 || r.MaxActivationDelay <= 0 {
		return false
	}
	a, p := activeAndPending(r.Keys, now)
	if a < 0 || p < 0 {
		return false
	}
	k := &r.Keys[p]
	if k.ActivateAt <= now || k.ActivateAt > now+gateHorizonSeconds {
		return false
	}
	origin := k.GateOrigin
	if origin == 0 {
		origin = k.ActivateAt
	}
	c := gate(r)
	if c.Ratio >= r.MinVerifierCoverage {
		if k.GateOrigin == 0 {
			return false
		}
		// Coverage arrived: activate now (the lead was met at origin).
		at := max(origin, now+1)
		if at >= k.ActivateAt {
			return false
		}
		k.ActivateAt = at
		k.GateNote = fmt.Sprintf("activated %ds after its scheduled time, once %d of %d declared verifiers held it", at-origin, c.Fresh, c.Declared)
		reschedule(r.Keys, r.schedule(), p, now)
		b.log().Info("activation gate released", "ring", r.Name, "kid", k.KID, "activates_at", fmtTime(at), "coverage", c.Ratio)
		return true
	}
	limit := origin + r.MaxActivationDelay
	if k.ActivateAt >= limit {
		return false
	}
	at := min(now+gateHorizonSeconds+1, limit)
	if at <= k.ActivateAt {
		return false
	}
	k.GateOrigin = origin
	k.ActivateAt = at
	stale := c.Stale
	if len(stale) > 10 {
		stale = append(stale[:10:10], fmt.Sprintf("and %d more", len(c.Stale)-10))
	}
	k.GateNote = clipNote(fmt.Sprintf("activation delayed %ds (at most %ds): coverage %.2f is below min_verifier_coverage %.2f; stale: %s",
		at-origin, r.MaxActivationDelay, c.Ratio, r.MinVerifierCoverage, strings.Join(stale, ", ")))
	reschedule(r.Keys, r.schedule(), p, now)
	b.metrics.gateDelays.WithLabelValues(r.Name).Inc()
	b.log().Warn("activation delayed by the verifier gate", "ring", r.Name, "kid", k.KID, "activates_at", fmtTime(at), "coverage", c.Ratio, "stale", strings.Join(stale, ","))
	return true
}

// clipNote bounds a gate note to maxGateNote bytes of valid UTF-8 (the
// verifiers report lists every stale verifier in full).
func clipNote(s string) string {
	if len(s) <= maxGateNote {
		return s
	}
	return strings.ToValidUTF8(s[:maxGateNote-len("...")], "") + "..."
}

// noteActivations logs and counts the scheduled activations of r since the
// last pass, once each. (They took effect at their activate_at, to the
// second, without waiting for this pass.) Activations made by rotate and
// revoke were counted by those operations.
func (b *backend) noteActivations(r *ringEntry, now int64) {
	if b.lastPass == 0 {
		return
	}
	for i := range r.Keys {
		k := &r.Keys[i]
		if !k.signed() || k.ActivateAt <= b.lastPass || k.ActivateAt > now {
			continue
		}
		if b.manualKIDs[k.KID] {
			delete(b.manualKIDs, k.KID)
			continue
		}
		b.rotated(r.Name, k.KID, "", k.ActivateAt, "scheduled")
	}
}

// sameKeys reports whether two key lists are the same, field by field.
func sameKeys(a, b []signingKey) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := &a[i], &b[i]
		if x.KID != y.KID || x.Alg != y.Alg || len(x.PublicJWK) != len(y.PublicJWK) ||
			x.PublishAt != y.PublishAt || x.ActivateAt != y.ActivateAt || x.RetireAt != y.RetireAt ||
			x.RemoveAt != y.RemoveAt || x.Overlap != y.Overlap || x.RevokedAt != y.RevokedAt ||
			x.Lead != y.Lead || x.Forced != y.Forced || x.RollbackUsed != y.RollbackUsed ||
			x.GateOrigin != y.GateOrigin || x.GateNote != y.GateNote || x.HasPrivate != y.HasPrivate {
			return false
		}
	}
	return true
}

// sweepDeletedRings deletes private halves left under a ring that no longer
// exists (a crash between deleting a ring and its keys).
func (b *backend) sweepDeletedRings(ctx context.Context, s logical.Storage, snap *snapshot) error {
	if b.swept("") {
		return nil
	}
	dirs, err := s.List(ctx, privatePrefix)
	if err != nil {
		return fmt.Errorf("list private halves: %w", err)
	}
	var errs []error
	for _, d := range dirs {
		name := strings.TrimSuffix(d, "/")
		if _, ok := snap.rings[name]; ok {
			continue
		}
		kids, err := s.List(ctx, privatePrefix+d)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		b.deletePrivates(ctx, s, name, kids)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	b.markSwept("")
	return nil
}

func (b *backend) swept(name string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.sweptRings[name]
}

func (b *backend) markSwept(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sweptRings[name] = true
}
