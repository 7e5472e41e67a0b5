package jwtrotor

import (
	"context"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const defaultVerifierWindow = int64(3600)

func pathVerifiers(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "verifiers$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "verifiers",
		},
		Fields: map[string]*framework.FieldSchema{
			"window": {
				Type:        framework.TypeDurationSecond,
				Default:     durationDefault(defaultVerifierWindow),
				Description: "Declared verifiers not seen within this window count as stale.",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: op(b.pathVerifiersRead, "read", "verifiers", "Report which JWKS fetchers hold the current keys, and which are stale.", map[string]*framework.FieldSchema{
				"declared":  {Type: framework.TypeSlice, Description: "Declared fetchers seen on this node.", Required: true},
				"anonymous": {Type: framework.TypeSlice, Description: "Other fetchers seen on this node (never counted).", Required: true},
				"rings":     {Type: framework.TypeMap, Description: "Per ring: active and pending kid and the pending key's coverage.", Required: true},
				"summary":   {Type: framework.TypeMap, Description: "Coverage, stale verifiers, declared verifiers not seen, and the tracker's size.", Required: true},
			}),
		},
		HelpSynopsis:    "Which verifiers hold the current keys, and which are stale.",
		HelpDescription: pathVerifiersHelpDesc,
	}
}

// ringKeys returns the active and first pending kid of every signing ring.
func ringKeys(snap *snapshot, now int64) (map[string][2]string, []string) {
	out := map[string][2]string{}
	names := []string{}
	for _, n := range sortedNames(snap.rings) {
		r := snap.rings[n]
		if r.DeletedAt != 0 {
			continue
		}
		a, p := activeAndPending(r.Keys, now)
		var pair [2]string
		if a >= 0 {
			pair[0] = r.Keys[a].KID
		}
		if p >= 0 {
			pair[1] = r.Keys[p].KID
		}
		out[n] = pair
		names = append(names, n)
	}
	return out, names
}

func (b *backend) pathVerifiersRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	window := int64(d.Get("window").(int))
	if window <= 0 {
		window = defaultVerifierWindow
	}
	now := b.now()
	views, evicted := b.tracker.snapshot(snap.declared)
	keys, names := ringKeys(snap, now)

	declared, anonymous := []map[string]any{}, []map[string]any{}
	staleNames := []string{}
	seenIDs := map[string]bool{}
	seenDeclared, fresh := 0, 0
	for _, v := range views {
		hasActive, hasPending := true, true
		tracked := 0
		for _, n := range names {
			if !v.tracks(n) {
				continue
			}
			tracked++
			if k := keys[n][0]; k != "" && !v.Kids[k] {
				hasActive = false
			}
			if k := keys[n][1]; k != "" && !v.Kids[k] {
				hasPending = false
			}
		}
		if tracked == 0 && len(names) > 0 {
			// Fetched no JWKS (the discovery document only).
			hasActive, hasPending = false, false
		}
		recent := now-v.LastSeen <= window
		stale := !(hasActive && hasPending) || !recent
		entry := map[string]any{
			"verifier":       v.Verifier,
			"remote_addr":    v.RemoteAddr,
			"user_agent":     v.UserAgent,
			"first_seen":     v.FirstSeen,
			"last_seen":      v.LastSeen,
			"fetches":        v.Fetches,
			"etag_served":    v.ETagServed,
			"etag_presented": v.ETagPresented,
			"has_active":     hasActive,
			"has_pending":    hasPending,
			"stale":          stale,
		}
		if !v.Declared {
			anonymous = append(anonymous, entry)
			continue
		}
		declared = append(declared, entry)
		if v.Verifier != "" && recent {
			seenIDs[v.Verifier] = true
		}
		if recent {
			seenDeclared++
			if !stale {
				fresh++
			}
		}
		if stale {
			staleNames = append(staleNames, v.name())
		}
	}
	never := []string{}
	for _, id := range snap.config.Verifiers {
		if !seenIDs[id] {
			never = append(never, id)
		}
	}
	rings := map[string]any{}
	for _, n := range names {
		pair := keys[n]
		entry := map[string]any{"active_kid": pair[0], "pending_kid": pair[1]}
		if pair[1] != "" {
			c := coverageOf(views, snap.config, n, pair[1], now, window)
			entry["pending_coverage"] = c.Ratio
			entry["declared"] = c.Declared
			entry["fresh"] = c.Fresh
			entry["stale"] = c.Stale
		}
		rings[n] = entry
	}
	coverageAll := 1.0
	if total := seenDeclared + len(never); total > 0 {
		coverageAll = float64(fresh) / float64(total)
	}
	return &logical.Response{Data: map[string]any{
		"declared":  declared,
		"anonymous": anonymous,
		"rings":     rings,
		"summary": map[string]any{
			"window":             window,
			"declared_seen":      seenDeclared,
			"declared_not_seen":  never,
			"stale":              staleNames,
			"coverage":           coverageAll,
			"tracked_clients":    len(views),
			"tracked_capacity":   maxTrackedClients,
			"evicted_clients":    evicted,
			"memory_note":        fmt.Sprintf("at most %d clients are tracked in memory on the node that served them; the least recently seen is forgotten first, and a restart or failover starts empty", maxTrackedClients),
			"anonymous_note":     "anonymous fetchers are listed but never count toward coverage or the activation gate",
			"declared_verifiers": snap.config.Verifiers,
		},
	}}, nil
}

const pathVerifiersHelpDesc = `
Lists every client seen fetching the JWKS or the discovery document on this
node: its verifier id (?verifier=<id> in its JWKS URL), address, User-Agent,
first and last fetch, fetch count, the ETag last served and presented, and
whether the JWKS it last received holds the current active and pending keys.
Declared verifiers (config verifiers and verifier_cidrs) are listed apart
from anonymous ones; only declared verifiers count toward coverage and the
activation gate. The summary names the stale declared verifiers and those
never seen within the window. Memory is bounded; nothing is stored.
`
