package jwtrotor

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
	snap, err := b.load(ctx, s)
	if err != nil {
		return fmt.Errorf("maintenance: %w", err)
	}
	now := b.now()
	var errs []error
	for _, name := range sortedNames(snap.rings) {
		if err := b.maintainRing(ctx, s, snap.rings[name], now); err != nil {
			if errors.Is(err, logical.ErrReadOnly) {
				return err
			}
			b.log().Error("maintenance failed", "ring", name, "error", err)
			errs = append(errs, err)
		}
	}
	if err := b.sweepDeletedRings(ctx, s, snap); err != nil {
		errs = append(errs, err)
	}
	// Persist the high-water mark so a restart after a clock step back
	// never derives state from an earlier time.
	if err := putJSON(ctx, s, clockPath, &clockEntry{Version: schemaVersion, HighWater: now}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *backend) maintainRing(ctx context.Context, s logical.Storage, old *ringEntry, now int64) error {
	r := old.clone()
	changed := false
	// Forget keys that are gone for good: removed ones, and revoked ones
	// once a verification_ttl has passed (kept that long so reads show them).
	kept := r.Keys[:0]
	for _, k := range r.Keys {
		switch k.state(now) {
		case stateRemoved:
			changed = true
			b.log().Info("key removed from the JWKS", "ring", r.Name, "kid", k.KID, "remove_at", k.RemoveAt)
			continue
		case stateRevoked:
			if now >= k.RevokedAt+r.VerificationTTL {
				changed = true
				continue
			}
		}
		kept = append(kept, k)
	}
	r.Keys = kept
	if r.DeletedAt != 0 && !anyPublished(r.Keys, now) {
		b.log().Info("deleted key ring drained", "ring", r.Name)
		return b.dropRing(ctx, s, r)
	}
	generated, err := b.stock(r, now)
	if err != nil {
		return err
	}
	for _, g := range generated {
		b.log().Info("pending key generated", "ring", r.Name, "kid", g.KID, "alg", g.Alg)
	}
	if len(generated) > 0 {
		changed = true
	}
	probe := r.clone()
	if len(releasePrivates(probe, now)) > 0 {
		changed = true
	}
	if r.DeletedAt == 0 {
		before := fmt.Sprint(probe.Keys)
		chain(probe.Keys, r.schedule(), now)
		if fmt.Sprint(probe.Keys) != before {
			changed = true
		}
	}
	if changed {
		if err := b.commitRing(ctx, s, old, r, generated, now); err != nil {
			return err
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

func anyPublished(keys []signingKey, now int64) bool {
	for i := range keys {
		if keys[i].published(now) {
			return true
		}
	}
	return false
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
		errs = append(errs, b.deletePrivates(ctx, s, name, kids))
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
