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
	// Uploads start at initialisation; should a Vault not initialise the
	// backend (or do so before it may write), the first pass starts them.
	if b.uploadLoop {
		b.startPublishing(req.Storage)
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
	states, err := b.publisherStates(ctx, s)
	if err != nil {
		b.metrics.maintenanceErr.WithLabelValues(mountWide).Inc()
		return fmt.Errorf("maintenance: %w", err)
	}
	gate := b.gateOf(snap, now, states)
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

func (b *backend) maintainRing(ctx context.Context, s logical.Storage, old *ringEntry, now int64, gate gateView) error {
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

// gateView is what the activation gate reads in one pass: the coverage of
// a ring under the one rule (coverageOf), over the last hour, and what each
// publisher's copy was acknowledged to hold.
type gateView struct {
	coverage   func(r *ringEntry) coverage
	publishers map[string]*publisherEntry
	states     map[string]*publisherState
}

// gateOf is the gate's view at now. The tracker is copied only if some
// ring's gate needs it.
func (b *backend) gateOf(snap *snapshot, now int64, states map[string]*publisherState) gateView {
	views := sync.OnceValue(func() []clientView {
		v, _ := b.tracker.snapshot(snap.declared)
		return v
	})
	return gateView{
		coverage: func(r *ringEntry) coverage {
			return coverageOf(views(), snap.config, r, now, defaultVerifierWindowSeconds)
		},
		publishers: snap.publishers,
		states:     states,
	}
}

// requiredPublishers are the names of the required publishers whose copy
// holds ring's keys: those of the whole mount and those of that ring.
func requiredPublishers(pubs map[string]*publisherEntry, ring string) []string {
	var names []string
	for name, p := range pubs {
		if p.Required && (p.Ring == "" || p.Ring == ring) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// mountWide labels maintenance failures that concern no single ring.
const mountWide = "(mount)"

// gateHorizonSeconds: maintenance decides on activations due within two
// ticks, so a decision is always stored before the activation it concerns.
const gateHorizonSeconds = 2 * maintenanceTickSeconds

// applyGate delays the next activation while too few declared verifiers
// hold the pending key, or a required publisher covering the ring has not
// acknowledged a copy that holds it, never past its original time plus
// max_activation_delay (one budget for both), and lets it go as soon as
// they do. The decision is a rewrite of timestamps like any other; chain
// and reschedule keep lead, overlap and the order of the keys after it.
func (b *backend) applyGate(r *ringEntry, now int64, g gateView) bool {
	required := requiredPublishers(g.publishers, r.Name)
	if r.DeletedAt != 0 || r.MaxActivationDelay <= 0 || (r.MinVerifierCoverage <= 0 && len(required) == 0) {
		return false
	}
	a, p := activeAndPending(r.Keys, now)
	if a < 0 || p < 0 {
		return false
	}
	k := &r.Keys[p]
	// Maintenance runs about once a minute, so the verifier gate decides
	// two ticks ahead; uploads run every second, so the publisher gate
	// decides only when the activation is near. A held key is released
	// whenever it is looked at.
	horizon, step := publisherGateHorizonSeconds, publisherHoldStepSeconds
	if r.MinVerifierCoverage > 0 {
		horizon, step = gateHorizonSeconds, gateHorizonSeconds+1
	}
	if k.ActivateAt <= now || (k.GateOrigin == 0 && k.ActivateAt > now+horizon) {
		return false
	}
	origin := k.GateOrigin
	if origin == 0 {
		origin = k.ActivateAt
	}
	var c coverage
	covered := true
	if r.MinVerifierCoverage > 0 {
		c = g.coverage(r)
		covered = c.Ratio >= r.MinVerifierCoverage
	}
	var missing []string
	for _, name := range required {
		if !g.states[name].holds(k.KID) {
			missing = append(missing, name)
		}
	}
	if covered && len(missing) == 0 {
		if k.GateOrigin == 0 {
			return false
		}
		// Coverage arrived: activate now (the lead was met at origin).
		at := max(origin, now+1)
		if at >= k.ActivateAt {
			return false
		}
		k.ActivateAt = at
		var once []string
		if r.MinVerifierCoverage > 0 {
			once = append(once, fmt.Sprintf("%d of %d declared verifiers held it", c.Fresh, c.Declared))
		}
		if len(required) > 0 {
			once = append(once, "the copies of publishers "+strings.Join(required, ", ")+" held it")
		}
		k.GateNote = clipNote(fmt.Sprintf("activated %ds after its scheduled time, once %s", at-origin, strings.Join(once, " and ")))
		reschedule(r.Keys, r.schedule(), p, now)
		b.log().Info("activation gate released", "ring", r.Name, "kid", k.KID, "activates_at", fmtTime(at), "coverage", c.Ratio)
		return true
	}
	limit := origin + r.MaxActivationDelay
	if k.ActivateAt >= limit {
		return false
	}
	at := min(now+step, limit)
	if at <= k.ActivateAt {
		return false
	}
	k.GateOrigin = origin
	k.ActivateAt = at
	var why []string
	if !covered {
		why = append(why, fmt.Sprintf("coverage %.2f is below min_verifier_coverage %.2f; stale: %s", c.Ratio, r.MinVerifierCoverage, strings.Join(stale(c.Stale), ", ")))
	}
	if len(missing) > 0 {
		why = append(why, "no acknowledged copy holds it at required publishers "+strings.Join(missing, ", "))
	}
	k.GateNote = clipNote(fmt.Sprintf("activation delayed %ds (at most %ds): %s", at-origin, r.MaxActivationDelay, strings.Join(why, "; ")))
	reschedule(r.Keys, r.schedule(), p, now)
	b.metrics.gateDelays.WithLabelValues(r.Name).Inc()
	if !covered {
		b.log().Warn("activation delayed by the verifier gate", "ring", r.Name, "kid", k.KID, "activates_at", fmtTime(at), "coverage", c.Ratio, "stale", strings.Join(stale(c.Stale), ","))
	}
	if len(missing) > 0 {
		b.log().Warn("activation delayed by the publisher gate", "ring", r.Name, "kid", k.KID, "activates_at", fmtTime(at), "publishers", strings.Join(missing, ","))
	}
	return true
}

// stale lists at most ten stale verifiers, and how many more there are.
func stale(names []string) []string {
	if len(names) <= 10 {
		return names
	}
	return append(names[:10:10], fmt.Sprintf("and %d more", len(names)-10))
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
