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

// coverage is the part of the report a ring's activation gate reads.
type coverage struct {
	// Ratio of declared verifiers whose last JWKS holds the pending key.
	Ratio float64
	// Declared is how many declared verifiers count: declared ids (seen or
	// not) plus clients seen from declared ranges.
	Declared int
	Fresh    int
	Stale    []string
}

// coverageOf computes, among declared verifiers seen within window seconds
// that fetch ring's keys, and declared ids not seen, how many hold kid.
// Anonymous clients never count, so they can never hold an activation back;
// a verifier that trusts other rings only does not count for this one.
func coverageOf(views []clientView, cfg *configEntry, ring, kid string, now, window int64) coverage {
	var c coverage
	seenIDs := map[string]bool{}
	for _, v := range views {
		if !v.Declared || now-v.LastSeen > window {
			continue
		}
		if v.Verifier != "" {
			seenIDs[v.Verifier] = true
		}
		if !v.tracks(ring) && len(v.Scopes) > 0 {
			// Fetches other rings' keys only: not a verifier of this one.
			// A client that fetched no JWKS at all (the discovery document
			// only) holds no key, and counts as stale.
			continue
		}
		c.Declared++
		if v.Kids[kid] {
			c.Fresh++
		} else {
			c.Stale = append(c.Stale, v.name())
		}
	}
	for _, id := range cfg.Verifiers {
		if !seenIDs[id] {
			c.Declared++
			c.Stale = append(c.Stale, id)
		}
	}
	sort.Strings(c.Stale)
	if c.Declared == 0 {
		c.Ratio = 1
	} else {
		c.Ratio = float64(c.Fresh) / float64(c.Declared)
	}
	return c
}

func (c *fetchClient) name() string {
	if c.Verifier != "" {
		return c.Verifier
	}
	return c.RemoteAddr + " (" + c.UserAgent + ")"
}
