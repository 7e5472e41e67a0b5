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

// currentKids returns the active and first pending kid of every ring not
// being deleted, by name.
func currentKids(snap *snapshot, now int64) []ringKids {
	out := []ringKids{}
	for _, n := range sortedNames(snap.rings) {
		if r := snap.rings[n]; r.DeletedAt == 0 {
			out = append(out, ringKidsOf(r, now))
		}
	}
	return out
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
	kids := currentKids(snap, now)
	v := judgeVerifiers(views, snap.config, kids, now, window)

	declared, anonymous := []map[string]any{}, []map[string]any{}
	for i := range views {
		c, f := &views[i], v.Fetchers[i]
		entry := map[string]any{
			"verifier":       c.Verifier,
			"remote_addr":    c.RemoteAddr,
			"user_agent":     c.UserAgent,
			"first_seen":     c.FirstSeen,
			"last_seen":      c.LastSeen,
			"fetches":        c.Fetches,
			"etag_served":    c.ETagServed,
			"etag_presented": c.ETagPresented,
			"has_active":     f.HasActive,
			"has_pending":    f.HasPending,
			"stale":          f.Stale,
			"counted":        f.Counts,
		}
		if c.Declared {
			declared = append(declared, entry)
		} else {
			anonymous = append(anonymous, entry)
		}
	}
	rings := map[string]any{}
	for _, k := range kids {
		c := v.Rings[k.Name]
		entry := map[string]any{"active_kid": k.Active, "pending_kid": k.Pending, "declared": c.Declared, "fresh": c.Fresh, "stale": c.Stale}
		if k.Pending != "" {
			entry["pending_coverage"] = c.Ratio
		}
		rings[k.Name] = entry
	}
	notSeen := v.NotSeen
	if notSeen == nil {
		notSeen = []string{}
	}
	return &logical.Response{Data: map[string]any{
		"declared":  declared,
		"anonymous": anonymous,
		"rings":     rings,
		"summary": map[string]any{
			"window":             window,
			"declared_seen":      v.Seen,
			"declared_not_seen":  notSeen,
			"stale":              v.Mount.Stale,
			"coverage":           v.Mount.Ratio,
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
