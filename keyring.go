package jwtrotor

import (
	"context"
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

// releasePrivates marks the private halves r no longer needs at now and
// returns their storage ids, to delete after the ring is written.
func releasePrivates(r *ringEntry, now int64) []string {
	var ids []string
	sched := r.schedule()
	for i := range r.Keys {
		if r.Keys[i].HasPrivate && !needsPrivate(r.Keys, i, sched, now) {
			r.Keys[i].HasPrivate = false
			ids = append(ids, r.Keys[i].storeID())
		}
	}
	return ids
}

// commitRing makes r's planned keys, settles it, checks it against old
// (which may be nil), writes the new private halves, records in the history
// the keys r no longer holds, writes r, then deletes the private halves r no
// longer needs. A failed delete is not a failed write: it comes back as a
// warning and maintenance retries it.
func (b *backend) commitRing(ctx context.Context, s logical.Storage, old, r *ringEntry, now int64) ([]string, []*generatedKey, error) {
	return b.commitRingWith(ctx, s, old, r, now, nil)
}

// commitRingWith is commitRing for a ring that also holds keys made before
// the commit (an imported key), whose private halves it writes with the
// generated ones.
func (b *backend) commitRingWith(ctx context.Context, s logical.Storage, old, r *ringEntry, now int64, made []*generatedKey) ([]string, []*generatedKey, error) {
	generated, err := materialize(r, b.keys)
	if err != nil {
		return nil, nil, err
	}
	settle(r, now)
	release := releasePrivates(r, now)
	// Keys dropped from the ring entirely lose their private halves too.
	if old != nil {
		still := map[string]bool{}
		for i := range r.Keys {
			still[r.Keys[i].KID] = true
		}
		for i := range old.Keys {
			if k := &old.Keys[i]; k.HasPrivate && !still[k.KID] {
				release = append(release, k.storeID())
			}
		}
	}
	if err := checkRing(r.Keys, r.schedule(), now); err != nil {
		return nil, nil, fmt.Errorf("ring %q: refusing to store an inconsistent schedule: %w", r.Name, err)
	}
	if err := checkTrusted(r.Keys, r.Trusted); err != nil {
		return nil, nil, fmt.Errorf("ring %q: refusing to store inconsistent keys: %w", r.Name, err)
	}
	if old != nil {
		if err := checkTransition(old.Keys, r.Keys, now); err != nil {
			return nil, nil, fmt.Errorf("ring %q: refusing to rewrite the past: %w", r.Name, err)
		}
	}
	for _, g := range append(append([]*generatedKey(nil), made...), generated...) {
		p := &privateEntry{Version: schemaVersion, KID: g.KID, Thumbprint: g.Thumbprint, Alg: g.Alg, PKCS8: g.PKCS8}
		if err := putJSON(ctx, s, privatePath(r.Name, g.storeID()), p); err != nil {
			return nil, nil, fmt.Errorf("ring %q: %w", r.Name, err)
		}
		if err := crashPoint("after-private-put"); err != nil {
			return nil, nil, err
		}
	}
	if err := recordDeparted(ctx, s, old, r, now); err != nil {
		return nil, nil, fmt.Errorf("ring %q: %w", r.Name, err)
	}
	r.Version = schemaVersion
	r.HighWater = now
	entry, err := logical.StorageEntryJSON(ringPrefix+r.Name, r)
	if err != nil {
		return nil, nil, fmt.Errorf("ring %q: encode: %w", r.Name, err)
	}
	if len(entry.Value) > maxRingEntryBytes {
		return nil, nil, fmt.Errorf("ring %q: refusing to store an entry of %d bytes, above the %d-byte bound", r.Name, len(entry.Value), maxRingEntryBytes)
	}
	if err := s.Put(ctx, entry); err != nil {
		return nil, nil, fmt.Errorf("ring %q: write: %w", r.Name, err)
	}
	b.cacheRing(r.Name, r)
	for _, g := range append(append([]*generatedKey(nil), made...), generated...) {
		b.cacheSigner(g.storeID(), g.Private)
	}
	if err := crashPoint("after-ring-put"); err != nil {
		return nil, nil, err
	}
	return b.deletePrivates(ctx, s, r.Name, release), generated, nil
}

// deletePrivates deletes private halves by storage id; those it cannot
// delete are kept for maintenance to retry, and reported as warnings.
func (b *backend) deletePrivates(ctx context.Context, s logical.Storage, ring string, ids []string) []string {
	var warnings []string
	for _, id := range ids {
		b.dropSigner(id)
		path := privatePath(ring, id)
		if err := s.Delete(ctx, path); err != nil {
			b.undeleted[path] = true
			b.log().Warn("could not delete a private half no longer needed; maintenance retries", "ring", ring, "key", id, "error", err)
			warnings = append(warnings, fmt.Sprintf("the private half of %s could not be deleted yet (%v); it no longer signs, and maintenance retries the delete", id, err))
			continue
		}
		delete(b.undeleted, path)
	}
	return warnings
}

// retryDeletes retries the deletes of private halves that failed before.
func (b *backend) retryDeletes(ctx context.Context, s logical.Storage) error {
	for path := range b.undeleted {
		if err := s.Delete(ctx, path); err != nil {
			return fmt.Errorf("delete %s: %w", path, err)
		}
		delete(b.undeleted, path)
	}
	return nil
}

// dropRing records a ring's keys in the history, then deletes the ring and
// every private half stored for it.
func (b *backend) dropRing(ctx context.Context, s logical.Storage, r *ringEntry, now int64) ([]string, error) {
	if err := recordDeparted(ctx, s, r, nil, now); err != nil {
		return nil, fmt.Errorf("ring %q: %w", r.Name, err)
	}
	if err := s.Delete(ctx, ringPrefix+r.Name); err != nil {
		return nil, fmt.Errorf("delete ring %q: %w", r.Name, err)
	}
	b.cacheRing(r.Name, nil)
	kids, err := s.List(ctx, privatePrefix+r.Name+"/")
	if err != nil {
		return nil, fmt.Errorf("list private halves of ring %q: %w", r.Name, err)
	}
	return b.deletePrivates(ctx, s, r.Name, kids), nil
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
			claimed[r.Keys[i].storeID()] = true
		}
	}
	var orphans []string
	for _, kid := range kids {
		if !claimed[kid] {
			orphans = append(orphans, kid)
		}
	}
	b.deletePrivates(ctx, s, r.Name, orphans)
	return nil
}

func fmtTime(t int64) string {
	if t == 0 || t == forever {
		return "(not scheduled)"
	}
	return time.Unix(t, 0).UTC().Format(time.RFC3339)
}
