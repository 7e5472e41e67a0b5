package jwtrotor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// This file writes rings. The order of writes is what makes a crash at any
// moment harmless: private halves are written before the ring entry that
// refers to them, and deleted only after the ring entry that stopped
// referring to them. A crash therefore leaves at worst an orphaned private
// half, which maintenance deletes; it never leaves a ring pointing at a
// missing key, and the ring entry itself changes in one Put.

// appendKey generates a key for slot at and appends it to r.
func (b *backend) appendKey(r *ringEntry, now, at int64) (*generatedKey, error) {
	g, err := generateKey(r.Algorithm, r.RSABits)
	if err != nil {
		return nil, fmt.Errorf("ring %q: %w", r.Name, err)
	}
	r.Keys = append(r.Keys, signingKey{
		KID: g.KID, Alg: g.Alg, PublicJWK: g.PublicJWK,
		PublishAt: now, ActivateAt: at, Lead: r.PublishLead, HasPrivate: true,
	})
	return g, nil
}

// stock generates the pending keys r needs at now (none for a deleted ring).
func (b *backend) stock(r *ringEntry, now int64) ([]*generatedKey, error) {
	if r.DeletedAt != 0 {
		return nil, nil
	}
	var out []*generatedKey
	for _, at := range stockSlots(r.Keys, r.schedule(), now) {
		g, err := b.appendKey(r, now, at)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

// releasePrivates marks the private halves r no longer needs at now and
// returns their kids, to delete after the ring is written.
func releasePrivates(r *ringEntry, now int64) []string {
	var kids []string
	sched := r.schedule()
	for i := range r.Keys {
		if r.Keys[i].HasPrivate && !needsPrivate(r.Keys, i, sched, now) {
			r.Keys[i].HasPrivate = false
			kids = append(kids, r.Keys[i].KID)
		}
	}
	return kids
}

// commitRing writes r (replacing old, which may be nil) and the private
// halves of generated, then deletes private halves r no longer needs.
func (b *backend) commitRing(ctx context.Context, s logical.Storage, old, r *ringEntry, generated []*generatedKey, now int64) error {
	if r.DeletedAt == 0 {
		chain(r.Keys, r.schedule(), now)
	} else {
		sortKeys(r.Keys)
	}
	release := releasePrivates(r, now)
	// Keys dropped from the ring entirely lose their private halves too.
	if old != nil {
		still := map[string]bool{}
		for i := range r.Keys {
			still[r.Keys[i].KID] = true
		}
		for i := range old.Keys {
			if k := &old.Keys[i]; k.HasPrivate && !still[k.KID] {
				release = append(release, k.KID)
			}
		}
	}
	if err := checkRing(r.Keys, r.schedule(), now); err != nil {
		return fmt.Errorf("ring %q: refusing to store an inconsistent schedule: %w", r.Name, err)
	}
	for _, g := range generated {
		p := &privateEntry{Version: schemaVersion, KID: g.KID, Alg: g.Alg, PKCS8: g.PKCS8}
		if err := putJSON(ctx, s, privatePath(r.Name, g.KID), p); err != nil {
			return fmt.Errorf("ring %q: %w", r.Name, err)
		}
		if err := crashPoint("after-private-put"); err != nil {
			return err
		}
	}
	r.Version = schemaVersion
	r.HighWater = now
	if err := putJSON(ctx, s, ringPrefix+r.Name, r); err != nil {
		return fmt.Errorf("ring %q: %w", r.Name, err)
	}
	b.cacheRing(r.Name, r)
	for _, g := range generated {
		b.cacheSigner(g.KID, g.Private)
	}
	if err := crashPoint("after-ring-put"); err != nil {
		return err
	}
	return b.deletePrivates(ctx, s, r.Name, release)
}

func (b *backend) deletePrivates(ctx context.Context, s logical.Storage, ring string, kids []string) error {
	var errs []error
	for _, kid := range kids {
		b.dropSigner(kid)
		if err := s.Delete(ctx, privatePath(ring, kid)); err != nil {
			errs = append(errs, fmt.Errorf("delete private half %s of ring %q: %w", kid, ring, err))
		}
	}
	return errors.Join(errs...)
}

// dropRing deletes a ring and every private half stored for it.
func (b *backend) dropRing(ctx context.Context, s logical.Storage, r *ringEntry) error {
	if err := s.Delete(ctx, ringPrefix+r.Name); err != nil {
		return fmt.Errorf("delete ring %q: %w", r.Name, err)
	}
	b.cacheRing(r.Name, nil)
	b.metrics.forgetRing(r.Name)
	kids, err := s.List(ctx, privatePrefix+r.Name+"/")
	if err != nil {
		return fmt.Errorf("list private halves of ring %q: %w", r.Name, err)
	}
	return b.deletePrivates(ctx, s, r.Name, kids)
}

// sweepOrphans deletes private halves the ring entry does not claim: what a
// crash between a private write and the ring write leaves behind.
func (b *backend) sweepOrphans(ctx context.Context, s logical.Storage, r *ringEntry) error {
	kids, err := s.List(ctx, privatePrefix+r.Name+"/")
	if err != nil {
		return fmt.Errorf("list private halves of ring %q: %w", r.Name, err)
	}
	claimed := map[string]bool{}
	for i := range r.Keys {
		if r.Keys[i].HasPrivate {
			claimed[r.Keys[i].KID] = true
		}
	}
	var orphans []string
	for _, kid := range kids {
		if !claimed[kid] {
			orphans = append(orphans, kid)
		}
	}
	return b.deletePrivates(ctx, s, r.Name, orphans)
}

func fmtTime(t int64) string {
	if t == 0 || t == forever {
		return "(not scheduled)"
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}
