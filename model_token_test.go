package jwtrotor

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// The model's "token" action set: reads of token/<role> that mint, on
// either node, and writes that turn a role's allow_token_read on and off.
// A minted token joins the same ledger as sign's tokens, so every
// invariant checked for those after each step holds for it too. The read's
// own rules are checked where it is drawn: it mints only for a role with
// allow_token_read, only with audience and ttl as query parameters, and a
// refused read is a 400 that stores nothing (model.do).

// modelTokenStats counts what the token actions drew, for TestModel's log.
var modelTokenStats struct {
	reads, minted, optIns atomic.Int64
}

func (m *model) tokenRead(t *rapid.T) {
	role := rapid.SampledFrom(modelRoles).Draw(t, "role")
	n := m.a
	if rapid.Bool().Draw(t, "standby") {
		n = m.b
	}
	// Most reads come right after the role opted in (created if need be),
	// so that minted tokens are many; the rest find the role as it is.
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	if rapid.IntRange(0, 2).Draw(t, "opt-in-first") > 0 {
		data := map[string]any{"allow_token_read": true}
		if m.role(role) == nil {
			// A new role: on the drawn ring, with the audiences sign uses
			// and lifetimes short enough for the rings the model makes.
			data["key"], data["audiences"], data["ttl"], data["max_ttl"] = ring, []any{"api", "admin"}, 30, 60
		}
		if _, out := m.do(m.a, logical.UpdateOperation, "roles/"+role, data); out == ok2xx {
			modelTokenStats.optIns.Add(1)
		}
		// The standby learns of the write as Vault would tell it.
		for _, key := range m.s.drain() {
			m.b.b.invalidate(context.Background(), key)
		}
	}
	// Query parameters arrive as strings, as Vault passes a GET's query.
	query := map[string]any{}
	ttl := rapid.SampledFrom([]string{"", "", "", "", "1", "30", "300", "1h", "7200", "-max-", "-max-", "junk", "-5"}).Draw(t, "ttl")
	if ttl != "" {
		query["ttl"] = ttl
	}
	if aud := rapid.SampledFrom([]string{"", "", "", "api", "admin", "api,admin", "evil"}).Draw(t, "audience"); aud != "" {
		query["audience"] = aud
	}
	// Nothing but audience and ttl, not even the path's own role.
	extra := ""
	if rapid.IntRange(0, 9).Draw(t, "set-extra") == 0 {
		extra = rapid.SampledFrom([]string{"claims", "tll", "subject", "role"}).Draw(t, "extra")
	}
	if extra != "" {
		query[extra] = "x"
	}
	m.longest(role, query)
	if v, ok := query["ttl"].(int64); ok {
		query["ttl"] = fmt.Sprint(v)
	}

	// What the node will answer from: its view after it applied every
	// invalidation so far.
	snap, err := n.b.load(context.Background(), m.s)
	if err != nil {
		m.t.Fatalf("%s: load: %v", n.name, err)
	}
	entry, issuer := snap.roles[role], snap.config.Issuer
	modelTokenStats.reads.Add(1)
	resp, out := m.do(n, logical.ReadOperation, "token/"+role, query)
	switch {
	case extra != "":
		if out != bad4xx || !strings.Contains(respErr(resp), extra+": unknown field") {
			m.t.Fatalf("token/%s with query parameter %q: want a 400 naming it, got %v %s", role, extra, out, respErr(resp))
		}
	case entry != nil && !entry.AllowTokenRead && ttl != "junk" && ttl != "-5":
		// (A malformed ttl is refused before the role is looked at.)
		// As for sign, a mount without an issuer is refused first.
		want := "allow_token_read:"
		if issuer == "" {
			want = "issuer:"
		}
		if out != bad4xx || !strings.HasPrefix(respErr(resp), want) {
			m.t.Fatalf("token/%s of a role without allow_token_read: want a 400 that says how to enable it, got %v %s", role, out, respErr(resp))
		}
	}
	if out != ok2xx {
		return
	}
	if entry == nil || !entry.AllowTokenRead || extra != "" {
		m.t.Fatalf("token/%s minted (allow_token_read %v, extra parameter %q)", role, entry != nil && entry.AllowTokenRead, extra)
	}
	modelTokenStats.minted.Add(1)
	m.record(n, role, resp.Data)
}

// roleTokenRead turns a role's allow_token_read on or off, now and then
// with a value of the wrong kind.
func (m *model) roleTokenRead(t *rapid.T) {
	name := rapid.SampledFrom(modelRoles).Draw(t, "role")
	on := rapid.IntRange(0, 3).Draw(t, "allow") > 0
	v := drawOdd(t, "allow_token_read", on)
	_, out := m.do(m.a, logical.UpdateOperation, "roles/"+name, map[string]any{"allow_token_read": v})
	if out != ok2xx {
		return
	}
	if b, isBool := v.(bool); isBool {
		if r := m.role(name); r == nil || r.AllowTokenRead != b {
			m.t.Fatalf("roles/%s: allow_token_read=%v answered 2xx but is not stored", name, b)
		}
		if b {
			modelTokenStats.optIns.Add(1)
		}
	}
}
