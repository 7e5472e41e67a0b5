package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const defaultVerifierWindowSeconds = int64(3600)

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
				Default:     durationDefault(defaultVerifierWindowSeconds),
				Description: "Declared verifiers not seen within this window count as stale.",
				Query:       true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: op(b.pathVerifiersRead, "read", "verifiers", "Report which JWKS fetchers hold the current keys, and which are stale.", map[string]*framework.FieldSchema{
				"declared":         {Type: framework.TypeSlice, Description: "Declared fetchers seen on this node.", Required: true},
				"anonymous":        {Type: framework.TypeSlice, Description: "Other fetchers seen on this node (never counted).", Required: true},
				"rings":            {Type: framework.TypeMap, Description: "Per ring: active and pending kid and the pending key's coverage.", Required: true},
				"summary":          {Type: framework.TypeMap, Description: "Coverage, stale verifiers, declared verifiers not seen, and the tracker's size.", Required: true},
				"coverage_summary": {Type: framework.TypeStringSlice, Description: "For reading by eye (vault read's table): a line for the mount (summary), then one per ring (rings): coverage, declared, fresh, stale verifiers.", Required: true},
				"verifier_summary": {Type: framework.TypeStringSlice, Description: "For reading by eye: one line per declared verifier, seen (declared) or not (declared_not_seen), then how many anonymous fetchers were seen.", Required: true},
				"publishers":       {Type: framework.TypeMap, Description: "Per publisher: state (current, behind, failing, never_published), required, ring, the kids its acknowledged copy holds, behind_seconds, unserved_kids and revoked_kids (in the copy, no longer served), last_success, last_error and last_error_reason (never a sink's response body), failures, acknowledged_via (public_url or store_api), max_age, restored.", Required: true},
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
	for _, n := range slices.Sorted(maps.Keys(snap.rings)) {
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
		window = defaultVerifierWindowSeconds
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
	states, err := b.publisherStates(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	publishers := map[string]any{}
	for _, pv := range b.publisherVerdicts(snap, states, now) {
		publishers[pv.Name] = pv.report()
	}
	notSeen := v.NotSeen
	if notSeen == nil {
		notSeen = []string{}
	}
	return &logical.Response{Data: map[string]any{
		"coverage_summary": coverageSummary(v, kids, views, evicted, window),
		"verifier_summary": verifierSummary(v, views, snap.config),
		"declared":         declared,
		"anonymous":        anonymous,
		"rings":            rings,
		"publishers":       publishers,
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

// coverageSummary is the report's figures in lines for vault read's table,
// which prints nested objects as Go maps: the mount, then each ring.
func coverageSummary(v verdict, kids []ringKids, views []clientView, evicted, window int64) []string {
	out := []string{fmt.Sprintf("mount coverage=%.2f declared=%d fresh=%d stale=%s not_seen=%s tracked=%d/%d evicted=%d window=%s",
		v.Mount.Ratio, v.Mount.Declared, v.Mount.Fresh, lineList(v.Mount.Stale), lineList(v.NotSeen),
		len(views), maxTrackedClients, evicted, time.Duration(window)*time.Second)}
	for _, k := range kids {
		c := v.Rings[k.Name]
		out = append(out, fmt.Sprintf("ring=%s active_kid=%s pending_kid=%s coverage=%.2f declared=%d fresh=%d stale=%s",
			k.Name, lineWord(k.Active), lineWord(k.Pending), c.Ratio, c.Declared, c.Fresh, lineList(c.Stale)))
	}
	return out
}

// verifierSummary is one line per declared verifier, seen or not, and a
// count of the anonymous fetchers.
func verifierSummary(v verdict, views []clientView, cfg *configEntry) []string {
	out := []string{}
	listed := map[string]bool{}
	anonymous := 0
	for i := range views {
		c, f := &views[i], v.Fetchers[i]
		if !c.Declared {
			anonymous++
			continue
		}
		who := "verifier=" + c.Verifier
		if c.Verifier == "" {
			who = fmt.Sprintf("addr=%s user_agent=%q", c.RemoteAddr, c.UserAgent)
		} else {
			listed[c.Verifier] = true
			who += " addr=" + c.RemoteAddr
		}
		out = append(out, fmt.Sprintf("%s last_seen=%s fetches=%d has_active=%t has_pending=%t stale=%t counted=%t",
			who, lineTime(c.LastSeen), c.Fetches, f.HasActive, f.HasPending, f.Stale, f.Counts))
	}
	if cfg != nil {
		for _, id := range cfg.Verifiers {
			if !listed[id] {
				out = append(out, fmt.Sprintf("verifier=%s last_seen=- stale=true counted=true", id))
			}
		}
	}
	return append(out, fmt.Sprintf("anonymous fetchers=%d (never counted)", anonymous))
}

// lineList joins names for a summary line: comma-separated, - when none.
func lineList(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ",")
}

func lineWord(s string) string {
	if s == "" {
		return "-"
	}
	return s
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
