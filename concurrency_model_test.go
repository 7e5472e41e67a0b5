package jwtrotor

import (
	"fmt"
	"hash/fnv"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The reference model of the concurrency test (concurrency_test.go), which
// checks each history of a burst of concurrent requests for
// linearizability. It is written from docs/api.md, docs/lifecycle.md and
// docs/invariants.md and never calls the plugin's lifecycle code: it holds, per ring, the
// published kids in activation order and which one is active, learns a new
// kid from the answer that created it, and from then on holds every answer
// to it.

const (
	concClients     = 4
	concOpsPerCl    = 10
	concYieldClient = concClients     // the write a forced yield runs
	concCodaClient  = concClients + 1 // the sequential requests after a burst
	concLead        = 600             // publish_lead of both rings
	concIssuerA     = "https://vault.example.com/v1/jwt"
	concIssuerB     = "https://vault-b.example.com/v1/jwt"
	// concNearBound is where a forced rotation may be refused for the
	// 40-key bound: the model does not re-derive the projection, it only
	// requires acceptance well below the bound.
	concNearBound = 30
)

// concRingAlgs are the rings of the test and their algorithms.
var concRingAlgs = map[string]string{"a": "ES256", "b": "EdDSA"}

var concRings = []string{"a", "b"}

type concKind int

const (
	cJWKS concKind = iota
	cDiscovery
	cSign
	cRotate
	cRevoke
	cRingWrite
	cConfigWrite
	cInvalidate
)

var concKindNames = []string{"jwks", "discovery", "sign", "rotate", "revoke", "ring-write", "config-write", "invalidate"}

// cIn is one request.
type cIn struct {
	kind  concKind
	path  string // JWKS and discovery reads
	scope string // "" every ring, or a ring (reads); the ring (writes, signs)
	inm   string // If-None-Match, "" for none
	kid   string // revoke
	// issuer and maxAge are a config write's; vttl a ring write's.
	issuer string
	maxAge int64
	vttl   int64
	key    string // invalidate
}

// cOut is what came back, parsed.
type cOut struct {
	status int // 200, 304, 400 (a refusal), 404, 500 (an error)
	err    string
	// Reads.
	etag     string
	kids     []string // sorted
	maxAge   int64
	stale    int64
	ccOK     bool // Cache-Control parsed
	issuer   string
	jwksURI  string
	algs     string
	bodyJSON bool
	// Writes.
	active, pending, promoted, previous, revoked string
	rotated                                      bool
	published                                    []string // ring write: kids of published states, sorted
	cfgIssuer                                    string
	cfgMaxAge                                    int64
	cfgVTTL                                      int64
	// Sign.
	signKID, iss, token string
	iat                 int64
}

func (in cIn) String() string {
	s := concKindNames[in.kind]
	switch in.kind {
	case cJWKS, cDiscovery:
		s += " " + in.path
		if in.inm != "" {
			s += " If-None-Match=" + in.inm
		}
	case cSign, cRotate, cRingWrite:
		s += " ring=" + in.scope
		if in.kind == cRingWrite {
			s += fmt.Sprintf(" verification_ttl=%d", in.vttl)
		}
	case cRevoke:
		s += " ring=" + in.scope + " kid=" + short(in.kid)
	case cConfigWrite:
		s += fmt.Sprintf(" issuer=%s jwks_max_age=%d", in.issuer, in.maxAge)
	case cInvalidate:
		s += " " + in.key
	}
	return s
}

func (o cOut) String() string {
	s := strconv.Itoa(o.status)
	if o.err != "" {
		s += " " + o.err
	}
	if o.etag != "" {
		s += fmt.Sprintf(" etag=%s max-age=%d", o.etag, o.maxAge)
	}
	if o.kids != nil {
		s += " kids=" + shortList(o.kids)
	}
	if o.issuer != "" {
		s += " issuer=" + o.issuer + " algs=" + o.algs
	}
	if o.active != "" || o.pending != "" {
		s += " active=" + short(o.active) + " pending=" + short(o.pending)
	}
	if o.promoted != "" {
		s += " promoted=" + short(o.promoted) + " previous=" + short(o.previous)
	}
	if o.published != nil {
		s += " published=" + shortList(o.published)
	}
	if o.signKID != "" {
		s += " kid=" + short(o.signKID) + " iss=" + o.iss
	}
	return s
}

func short(kid string) string {
	if len(kid) > 8 {
		return kid[:8]
	}
	return kid
}

func shortList(kids []string) string {
	out := make([]string, len(kids))
	for i, k := range kids {
		out[i] = short(k)
	}
	return "[" + strings.Join(out, " ") + "]"
}

type mKey struct {
	kid   string
	state byte // 'P' pending, 'A' active, 'R' retiring
	// removeAt is a scheduled removal that can bound max-age; 0 when it is
	// further away than any max-age (a key retired in a burst stays
	// published for its overlap, at least verification_ttl: hours).
	removeAt int64
}

type mRing struct {
	alg  string
	keys []mKey // published keys, in activation order
	// revoked are kids revoked in this burst: revoking them again is a
	// no-op. oldRevoked are tombstones from before the burst, which a ring
	// write may forget (then a revoke is a 400): either answer is right.
	// removed are kids whose keys left the JWKS: a revoke is a 400.
	revoked, oldRevoked, removed []string
}

// mState is immutable: Step returns a changed copy.
type mState struct {
	rings  map[string]*mRing
	issuer string
	maxAge int64
	// etags are what this burst learned: document content to ETag.
	etags map[string]string
	key   string
}

// concBase is what the run knew before the burst: ETags of contents seen,
// and every kid ever seen (a kid named as new must not be one of them).
type concBase struct {
	now      int64
	etags    map[string]string
	etagOf   map[string]string // ETag to content
	seenKIDs map[string]bool
}

func (s *mState) clone() *mState {
	c := &mState{rings: map[string]*mRing{}, issuer: s.issuer, maxAge: s.maxAge, etags: map[string]string{}}
	for n, r := range s.rings {
		c.rings[n] = r
	}
	for k, v := range s.etags {
		c.etags[k] = v
	}
	return c
}

func (r *mRing) clone() *mRing {
	c := *r
	c.keys = append([]mKey(nil), r.keys...)
	c.revoked = append([]string(nil), r.revoked...)
	c.oldRevoked = append([]string(nil), r.oldRevoked...)
	c.removed = append([]string(nil), r.removed...)
	return &c
}

func (s *mState) seal() *mState {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|", s.issuer, s.maxAge)
	for _, n := range concRings {
		r := s.rings[n]
		b.WriteString(n + "{")
		for _, k := range r.keys {
			fmt.Fprintf(&b, "%s:%c:%d,", k.kid, k.state, k.removeAt)
		}
		fmt.Fprintf(&b, "|%v|%v|%v}", r.revoked, r.oldRevoked, r.removed)
	}
	ks := make([]string, 0, len(s.etags))
	for k := range s.etags {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		b.WriteString(k + "=" + s.etags[k] + ";")
	}
	s.key = b.String()
	return s
}

func (r *mRing) active() int {
	for i, k := range r.keys {
		if k.state == 'A' {
			return i
		}
	}
	return -1
}

func (r *mRing) firstPending() int {
	for i, k := range r.keys {
		if k.state == 'P' {
			return i
		}
	}
	return -1
}

func (r *mRing) kidAt(i int) string {
	if i < 0 {
		return ""
	}
	return r.keys[i].kid
}

func (r *mRing) index(kid string) int {
	for i, k := range r.keys {
		if k.kid == kid {
			return i
		}
	}
	return -1
}

// served is the sorted kids the document of scope holds, and the latest
// max-age the model allows for it.
func (s *mState) served(scope string, now int64) ([]string, int64) {
	kids := []string{}
	m := s.maxAge
	for _, n := range concRings {
		if scope != "" && scope != n {
			continue
		}
		for _, k := range s.rings[n].keys {
			kids = append(kids, k.kid)
			if k.removeAt > now && k.removeAt-now < m {
				m = k.removeAt - now
			}
		}
	}
	sort.Strings(kids)
	return kids, m
}

func (s *mState) algs() string {
	set := map[string]bool{"RS256": true}
	for _, n := range concRings {
		if len(s.rings[n].keys) > 0 {
			set[s.rings[n].alg] = true
		}
	}
	var l []string
	for a := range set {
		l = append(l, a)
	}
	sort.Strings(l)
	return strings.Join(l, ",")
}

// fresh reports whether kid is a kid nobody has seen: a key just made.
func (s *mState) fresh(base *concBase, kid string) bool {
	if kid == "" || base.seenKIDs[kid] {
		return false
	}
	for _, r := range s.rings {
		if r.index(kid) >= 0 || slices.Contains(r.revoked, kid) || slices.Contains(r.oldRevoked, kid) || slices.Contains(r.removed, kid) {
			return false
		}
	}
	return true
}

// inmMatches is If-None-Match as RFC 9110 defines it (weak comparison).
func inmMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// maxAgeOK is docs/api.md's JWKS caching: N is at most m (the lower of
// jwks_max_age and the time to the next removal of a served key); above
// 10 s it is lowered at random by up to 10%; it is at least 1.
func maxAgeOK(n, m int64) bool {
	hi := max(m, 1)
	lo := hi
	if hi > 10 {
		lo = hi - hi/10
	}
	return n >= lo && n <= hi
}

// document checks a JWKS or discovery answer against the state, and
// learns the ETag of its content if it was not known.
func (s *mState) document(base *concBase, in cIn, out cOut) (bool, *mState) {
	if out.status != 200 && out.status != 304 {
		return false, nil
	}
	if out.etag == "" || !out.ccOK || out.stale != concLead {
		return false, nil
	}
	scope := in.scope
	var content string
	kids, m := s.served(scope, base.now)
	if in.kind == cDiscovery {
		kids, m = s.served("", base.now)
		content = "discovery:" + s.issuer + "|" + s.algs()
	} else {
		content = "jwks:" + strings.Join(kids, ",")
	}
	if !maxAgeOK(out.maxAge, m) {
		return false, nil
	}
	if out.status == 304 {
		if !inmMatches(in.inm, out.etag) {
			return false, nil
		}
	} else {
		if inmMatches(in.inm, out.etag) || !out.bodyJSON {
			return false, nil
		}
		if in.kind == cDiscovery {
			if out.issuer != s.issuer || out.jwksURI != s.issuer+"/jwks" || out.algs != s.algs() {
				return false, nil
			}
		} else if strings.Join(out.kids, ",") != strings.Join(kids, ",") {
			return false, nil
		}
	}
	// The ETag is a function of the content, and one content has one.
	if e, ok := s.etags[content]; ok {
		return e == out.etag, s
	}
	if e, ok := base.etags[content]; ok {
		return e == out.etag, s
	}
	if c, ok := base.etagOf[out.etag]; ok && c != content {
		return false, nil
	}
	for c, e := range s.etags {
		if e == out.etag && c != content {
			return false, nil
		}
	}
	n := s.clone()
	n.etags[content] = out.etag
	return true, n.seal()
}

// pendingAfter checks the pending_kid of a write's answer against the
// ring after the write, adding it when it is a key the write made.
func (s *mState) pendingAfter(base *concBase, r *mRing, pending string) bool {
	if p := r.firstPending(); p >= 0 {
		return r.keys[p].kid == pending
	}
	if pending == "" {
		return true
	}
	if !s.fresh(base, pending) {
		return false
	}
	r.keys = append(r.keys, mKey{kid: pending, state: 'P'})
	return true
}

func concModel(base *concBase) porcupine.Model {
	return porcupine.Model{
		Step: func(st, input, output any) (bool, any) {
			s, in, out := st.(*mState), input.(cIn), output.(cOut)
			switch in.kind {
			case cJWKS, cDiscovery:
				return s.document(base, in, out)
			case cInvalidate:
				return out.status == 200, s
			case cSign:
				r := s.rings[in.scope]
				a := r.active()
				if a < 0 {
					return out.status == 400, s
				}
				return out.status == 200 && out.signKID == r.keys[a].kid && out.iss == s.issuer && out.iat == base.now, s
			case cConfigWrite:
				// A config write answers 204, or the config it stored.
				if out.status != 204 && (out.status != 200 || out.cfgIssuer != in.issuer || out.cfgMaxAge != in.maxAge) {
					return false, nil
				}
				n := s.clone()
				n.issuer, n.maxAge = in.issuer, in.maxAge
				return true, n.seal()
			case cRingWrite:
				r := s.rings[in.scope]
				if out.status == 400 {
					return len(r.keys) >= concNearBound && strings.Contains(out.err, "verification_ttl"), s
				}
				if out.status != 200 || out.cfgVTTL != in.vttl {
					return false, nil
				}
				kids, _ := s.served(in.scope, base.now)
				// Changing a setting moves no key (docs/api.md).
				return strings.Join(out.published, ",") == strings.Join(kids, ",") &&
					out.active == r.kidAt(r.active()) && out.pending == r.kidAt(r.firstPending()), s
			case cRotate:
				return s.rotate(base, in, out)
			case cRevoke:
				return s.revoke(base, in, out)
			}
			return false, nil
		},
		Equal: func(a, b any) bool { return a.(*mState).key == b.(*mState).key },
		Hash: func(st any) uint64 {
			h := fnv.New64a()
			h.Write([]byte(st.(*mState).key))
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			return input.(cIn).String() + " -> " + output.(cOut).String()
		},
		DescribeState: func(st any) string { return st.(*mState).key },
	}
}

// rotate is keys/<name>/rotate force=true (docs/lifecycle.md, Rotate): the
// next pending key (or, with none, a new one) signs from now, the outgoing
// key retires and stays published for its overlap.
func (s *mState) rotate(base *concBase, in cIn, out cOut) (bool, any) {
	r := s.rings[in.scope]
	if out.status == 400 {
		return len(r.keys) >= concNearBound && strings.Contains(out.err, "force"), s
	}
	if out.status != 200 || !out.rotated {
		return false, nil
	}
	n := s.clone()
	nr := r.clone()
	n.rings[in.scope] = nr
	a := nr.active()
	if out.previous != nr.kidAt(a) {
		return false, nil
	}
	if a >= 0 {
		nr.keys[a].state, nr.keys[a].removeAt = 'R', 0
	}
	if p := nr.firstPending(); p >= 0 {
		if out.promoted != nr.keys[p].kid {
			return false, nil
		}
		nr.keys[p].state, nr.keys[p].removeAt = 'A', 0
	} else {
		if !s.fresh(base, out.promoted) {
			return false, nil
		}
		nr.keys = append(nr.keys, mKey{kid: out.promoted, state: 'A'})
	}
	if out.active != out.promoted || !n.pendingAfter(base, nr, out.pending) {
		return false, nil
	}
	return true, n.seal()
}

// revoke is keys/<name>/revoke (docs/lifecycle.md, Revoke): the key leaves
// the JWKS at once; revoking the active key promotes the next pending key
// (or a new one); revoking a revoked key is a no-op, a removed or unknown
// one a 400.
func (s *mState) revoke(base *concBase, in cIn, out cOut) (bool, any) {
	r := s.rings[in.scope]
	i := r.index(in.kid)
	if i < 0 {
		switch {
		case slices.Contains(r.revoked, in.kid):
			return out.status == 200 && out.revoked == in.kid &&
				out.active == r.kidAt(r.active()) && out.pending == r.kidAt(r.firstPending()), s
		case slices.Contains(r.oldRevoked, in.kid):
			return out.status == 400 || (out.status == 200 && out.revoked == in.kid &&
				out.active == r.kidAt(r.active()) && out.pending == r.kidAt(r.firstPending())), s
		default:
			return out.status == 400, s
		}
	}
	if out.status != 200 || out.revoked != in.kid {
		return false, nil
	}
	n := s.clone()
	nr := r.clone()
	n.rings[in.scope] = nr
	wasActive := nr.keys[i].state == 'A'
	nr.keys = append(nr.keys[:i], nr.keys[i+1:]...)
	nr.revoked = append(nr.revoked, in.kid)
	if wasActive {
		if p := nr.firstPending(); p >= 0 {
			nr.keys[p].state, nr.keys[p].removeAt = 'A', 0
		} else {
			if !s.fresh(base, out.active) {
				return false, nil
			}
			nr.keys = append(nr.keys, mKey{kid: out.active, state: 'A'})
		}
	}
	if out.active != nr.kidAt(nr.active()) || !n.pendingAfter(base, nr, out.pending) {
		return false, nil
	}
	return true, n.seal()
}
