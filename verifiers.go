package jwtrotor

import (
	"container/list"
	"net"
	"sort"
	"strings"
	"sync"
	"unicode/utf8"
)

// The verifier tracker remembers who fetched the JWKS and what they got, in
// bounded memory on the node that served them, and never in storage: the
// unauthenticated path must not be a way to write to Vault.

const (
	// maxTrackedClients bounds the anonymous clients the tracker keeps; the
	// least recently seen is forgotten first.
	maxTrackedClients = 10000
	// maxDeclaredClients bounds the declared clients (by id or address
	// range), kept apart so that no number of anonymous fetches can push a
	// declared verifier out of the report or the activation gate.
	maxDeclaredClients = 1000
	// maxTrackedDocs bounds the remembered served documents (ETag to kids).
	maxTrackedDocs = 256
	maxFieldLen    = 256
)

// fetchClient is one fetcher, keyed by its verifier id when it gives one,
// else by address and User-Agent.
type fetchClient struct {
	key           string
	Verifier      string
	RemoteAddr    string
	UserAgent     string
	FirstSeen     int64
	LastSeen      int64
	Fetches       int64
	ETagServed    string
	ETagPresented string
	// served is the last ETag served per scope (all rings, one ring). A
	// fetch of one scope never hides what the client holds of another, so
	// a spoofed fetch under a verifier's id cannot make it look stale.
	served   map[string]string
	elem     *list.Element
	declared bool
}

// maxScopesPerClient bounds served.
const maxScopesPerClient = 16

type verifierTracker struct {
	mu      sync.Mutex
	clients map[string]*fetchClient
	// anon and declared order the two kinds of clients, most recently seen
	// at the front; each is bounded on its own.
	anon     *list.List
	declared *list.List
	evicted  int64
	// docs maps a served ETag to the kids of that document.
	docs     map[string][]string
	docOrder []string
}

func newVerifierTracker() *verifierTracker {
	return &verifierTracker{clients: map[string]*fetchClient{}, anon: list.New(), declared: list.New(), docs: map[string][]string{}}
}

func clip(s string) string {
	if len(s) > maxFieldLen {
		s = s[:maxFieldLen]
	}
	return strings.ToValidUTF8(s, "?")
}

// observe records one fetch: what the client presented and what it got.
// declared says whether the fetcher counts as a declared verifier (by id or
// address range) under the configuration in force.
func (t *verifierTracker) observe(verifier, addr, ua, presented, scope, served string, kids []string, now int64, declared bool) {
	verifier, addr, ua, presented = clip(verifier), clip(addr), clip(ua), clip(presented)
	if !utf8.ValidString(verifier) {
		verifier = ""
	}
	key := "addr:" + addr + "|ua:" + ua
	if verifier != "" {
		key = "verifier:" + verifier
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.docs[served]; !ok && served != "" {
		t.docs[served] = kids
		t.docOrder = append(t.docOrder, served)
		if len(t.docOrder) > maxTrackedDocs {
			delete(t.docs, t.docOrder[0])
			t.docOrder = t.docOrder[1:]
		}
	}
	c := t.clients[key]
	if c != nil && c.declared != declared {
		// The configuration changed what this client is.
		t.list(c.declared).Remove(c.elem)
		delete(t.clients, key)
		c.elem = nil
	}
	if c == nil || c.elem == nil {
		l, limit := t.list(declared), maxTrackedClients
		if declared {
			limit = maxDeclaredClients
		}
		if l.Len() >= limit {
			oldest := l.Back()
			old := oldest.Value.(*fetchClient)
			l.Remove(oldest)
			delete(t.clients, old.key)
			t.evicted++
		}
		if c == nil {
			c = &fetchClient{key: key, Verifier: verifier, FirstSeen: now, served: map[string]string{}}
		}
		c.declared = declared
		c.elem = l.PushFront(c)
		t.clients[key] = c
	} else {
		t.list(declared).MoveToFront(c.elem)
	}
	c.RemoteAddr, c.UserAgent = addr, ua
	c.LastSeen = now
	c.Fetches++
	c.ETagPresented = presented
	if served != "" {
		c.ETagServed = served
		if _, ok := c.served[scope]; ok || len(c.served) < maxScopesPerClient {
			c.served[scope] = served
		}
	}
}

func (t *verifierTracker) list(declared bool) *list.List {
	if declared {
		return t.declared
	}
	return t.anon
}

// clientView is a client with what its last JWKS holds, for reports.
type clientView struct {
	fetchClient
	Declared bool
	Kids     map[string]bool
	// Scopes are the documents it fetched: allScope, ring names, discovery.
	Scopes map[string]bool
}

// tracks reports whether the client fetches a document holding ring's keys.
func (v *clientView) tracks(ring string) bool {
	return v.Scopes[allScope] || v.Scopes[ring]
}

// snapshot copies the tracked clients, most recently seen first.
func (t *verifierTracker) snapshot(decl declaredSet) ([]clientView, int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]clientView, 0, len(t.clients))
	for _, l := range []*list.List{t.declared, t.anon} {
		for e := l.Front(); e != nil; e = e.Next() {
			c := e.Value.(*fetchClient)
			v := clientView{fetchClient: *c, Kids: map[string]bool{}, Scopes: map[string]bool{}}
			v.elem, v.served = nil, nil
			for scope := range c.served {
				v.Scopes[scope] = true
			}
			v.Declared = decl.has(c.Verifier, c.RemoteAddr)
			for _, etag := range c.served {
				for _, k := range t.docs[etag] {
					v.Kids[k] = true
				}
			}
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastSeen > out[j].LastSeen })
	return out, t.evicted
}

// declaredSet is who counts as a declared verifier under one configuration.
type declaredSet struct {
	ids  map[string]bool
	nets []*net.IPNet
}

func (d declaredSet) has(verifier, addr string) bool {
	return (verifier != "" && d.ids[verifier]) || (len(d.nets) > 0 && inCIDRs(d.nets, addr))
}

// declaredBy parses the declared set of cfg (once per configuration: the
// backend keeps it beside the configuration).
func declaredBy(cfg *configEntry) declaredSet {
	d := declaredSet{ids: map[string]bool{}}
	if cfg == nil {
		return d
	}
	d.nets = parseCIDRs(cfg.VerifierCIDRs)
	for _, id := range cfg.Verifiers {
		d.ids[id] = true
	}
	return d
}

func parseCIDRs(list []string) []*net.IPNet {
	var out []*net.IPNet
	for _, s := range list {
		if _, n, err := net.ParseCIDR(s); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func inCIDRs(nets []*net.IPNet, addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return false
	}
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// The one rule of staleness and coverage. The verifiers report (its
// summary, every ring and every fetcher), the metrics and the activation
// gate all read judgeVerifiers, so they cannot disagree; docs/api.md
// (#stale-and-coverage) states the rule.
//
//   - Who counts: declared verifiers only. A declared id (config verifiers)
//     always counts, seen or not; a fetcher declared by address range only
//     counts while it has been seen within the window (an address that
//     stopped fetching is a replaced instance as often as a stuck one).
//   - For which rings: a declared id not seen within the window counts for
//     every ring. A fetcher seen within it counts for the rings whose keys
//     it fetches (the mount's JWKS or jwks/<ring>); one that fetched no JWKS
//     at all (the discovery document only) counts for every ring.
//   - Stale for a ring: not seen within the window, or its last JWKS of that
//     ring lacks the ring's active key or its next pending key.
//   - A ring's coverage is the share of the verifiers counting for it that
//     are not stale for it (1 when none count). The mount's stale verifiers
//     are those stale for some ring or not seen within the window, and its
//     coverage is the share of counted verifiers that are not.

// ringKids are the keys of one ring a verifier must hold: the one that signs
// now and the next pending one ("" when the ring has none).
type ringKids struct{ Name, Active, Pending string }

// ringKidsOf returns the active and first pending kid of r at now.
func ringKidsOf(r *ringEntry, now int64) ringKids {
	k := ringKids{Name: r.Name}
	a, p := activeAndPending(r.Keys, now)
	if a >= 0 {
		k.Active = r.Keys[a].KID
	}
	if p >= 0 {
		k.Pending = r.Keys[p].KID
	}
	return k
}

// coverage is one ring's verdict, or the mount's: what rings.<name> and
// summary report, what the metrics export and what the gate compares.
type coverage struct {
	// Ratio of counted verifiers that are not stale (1 when none count).
	Ratio    float64
	Declared int
	Fresh    int
	Stale    []string
}

// fetcherVerdict is what the rule says of one tracked fetcher.
type fetcherVerdict struct {
	// Counts: it is a declared verifier that counts toward coverage now.
	Counts bool
	// HasActive, HasPending: its last JWKS holds the active (pending) key
	// of every ring whose keys it fetches.
	HasActive, HasPending bool
	// Stale: not seen within the window, or HasActive or HasPending is
	// false. Said of anonymous fetchers too, who never count.
	Stale bool
}

// verdict is the rule applied to one tracker state.
type verdict struct {
	Rings map[string]coverage
	// Mount is the mount-wide verdict: counted verifiers, stale for some
	// ring or not seen within the window.
	Mount coverage
	// Fetchers has one entry per view, in the views' order.
	Fetchers []fetcherVerdict
	// Seen counts the declared fetchers seen within the window; NotSeen
	// names the declared ids not seen within it, in config order.
	Seen    int
	NotSeen []string
}

// judgeVerifiers applies the rule to the tracker's views, the declared ids
// of cfg and the current keys of rings, at now with window seconds. It is
// pure: the same arguments give the same verdict.
func judgeVerifiers(views []clientView, cfg *configEntry, rings []ringKids, now, window int64) verdict {
	out := verdict{Rings: make(map[string]coverage, len(rings)), Fetchers: make([]fetcherVerdict, len(views))}
	ids := map[string]bool{}
	if cfg != nil {
		for _, id := range cfg.Verifiers {
			ids[id] = true
		}
	}
	staleFor := make([][]string, len(rings))
	counted := make([]int, len(rings))
	recentIDs, viewIDs := map[string]bool{}, map[string]bool{}
	mountStale := []string{}
	mountCounted := 0
	for i := range views {
		v := &views[i]
		recent := now-v.LastSeen <= window
		byID := v.Verifier != "" && ids[v.Verifier]
		declared := v.Declared || byID
		f := fetcherVerdict{Counts: declared && (recent || byID), HasActive: true, HasPending: true}
		for j, r := range rings {
			fetches := len(v.Scopes) == 0 || v.tracks(r.Name)
			lacks := (r.Active != "" && !v.Kids[r.Active]) || (r.Pending != "" && !v.Kids[r.Pending])
			if fetches {
				f.HasActive = f.HasActive && (r.Active == "" || v.Kids[r.Active])
				f.HasPending = f.HasPending && (r.Pending == "" || v.Kids[r.Pending])
			}
			if !f.Counts || (recent && !fetches) {
				continue
			}
			counted[j]++
			if !recent || lacks {
				staleFor[j] = append(staleFor[j], v.name())
			}
		}
		f.Stale = !recent || !f.HasActive || !f.HasPending
		out.Fetchers[i] = f
		if declared && recent {
			out.Seen++
			if v.Verifier != "" {
				recentIDs[v.Verifier] = true
			}
		}
		if byID {
			viewIDs[v.Verifier] = true
		}
		if f.Counts {
			mountCounted++
			if f.Stale {
				mountStale = append(mountStale, v.name())
			}
		}
	}
	if cfg != nil {
		for _, id := range cfg.Verifiers {
			if !recentIDs[id] {
				out.NotSeen = append(out.NotSeen, id)
			}
			if viewIDs[id] {
				continue
			}
			// Never seen (or forgotten): counts, and is stale, everywhere.
			mountCounted++
			mountStale = append(mountStale, id)
			for j := range rings {
				counted[j]++
				staleFor[j] = append(staleFor[j], id)
			}
		}
	}
	for j, r := range rings {
		out.Rings[r.Name] = newCoverage(counted[j], staleFor[j])
	}
	out.Mount = newCoverage(mountCounted, mountStale)
	return out
}

func newCoverage(counted int, stale []string) coverage {
	if stale == nil {
		stale = []string{}
	}
	sort.Strings(stale)
	c := coverage{Declared: counted, Fresh: counted - len(stale), Stale: stale, Ratio: 1}
	if counted > 0 {
		c.Ratio = float64(c.Fresh) / float64(counted)
	}
	return c
}

// coverageOf is the verdict on one ring: what its activation gate compares
// with min_verifier_coverage. Anonymous fetchers never count, so they can
// never hold an activation back.
func coverageOf(views []clientView, cfg *configEntry, r *ringEntry, now, window int64) coverage {
	k := ringKidsOf(r, now)
	return judgeVerifiers(views, cfg, []ringKids{k}, now, window).Rings[k.Name]
}

func (c *fetchClient) name() string {
	if c.Verifier != "" {
		return c.Verifier
	}
	return c.RemoteAddr + " (" + c.UserAgent + ")"
}
