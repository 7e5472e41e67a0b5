package jwtrotor

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/vault/sdk/logical"
)

// concSeedEnv replays a run: the same seed draws the same bursts (the same
// requests and forced interleavings; the goroutine schedule is the
// runtime's).
const concSeedEnv = "JWT_ROTOR_CONCURRENCY_SEED"

// concBurstsEnv runs more bursts than the unit suite's default.
const concBurstsEnv = "JWT_ROTOR_CONCURRENCY_BURSTS"

// concNode is the node under test and what the run learned across bursts.
type concNode struct {
	e      *testEnv // the active node
	reader *testEnv // the node under test in this burst: e or its standby
	ctx    context.Context
	clock  atomic.Int64 // history timestamps: a counter, so no two events tie
	mu     sync.Mutex
	hist   []porcupine.Operation
	tokens []cOut
}

func (c *concNode) tick() int64 { return c.clock.Add(1) }

// run sends one request and records it.
func (c *concNode) run(client int, in cIn) cOut {
	call := c.tick()
	out := c.send(in)
	ret := c.tick()
	c.mu.Lock()
	c.hist = append(c.hist, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	if in.kind == cSign && out.status == 200 {
		c.tokens = append(c.tokens, out)
	}
	c.mu.Unlock()
	return out
}

var concCacheControl = regexp.MustCompile(`^public, max-age=(\d+), stale-if-error=(\d+)$`)

func (c *concNode) send(in cIn) cOut {
	// Reads, signs and invalidations go to the node under test; writes to
	// the active node (the node under test, or the one its standby
	// forwards them to).
	e := c.reader
	if in.kind == cInvalidate {
		e.b.Backend.InvalidateKey(c.ctx, in.key)
		return cOut{status: 200}
	}
	var resp *logical.Response
	var err error
	switch in.kind {
	case cJWKS, cDiscovery:
		req := &logical.Request{Operation: logical.ReadOperation, Path: in.path, Storage: e.storage,
			Connection: &logical.Connection{RemoteAddr: "192.0.2.9"}}
		if in.inm != "" {
			req.Headers = map[string][]string{"If-None-Match": {in.inm}}
		}
		resp, err = e.b.HandleRequest(c.ctx, req)
	case cSign:
		resp, err = e.write("sign/r"+in.scope, nil)
	case cRotate:
		resp, err = c.e.write("keys/"+in.scope+"/rotate", map[string]any{"force": true})
	case cRevoke:
		resp, err = c.e.write("keys/"+in.scope+"/revoke", map[string]any{"kid": in.kid})
	case cRingWrite:
		resp, err = c.e.write("keys/"+in.scope, map[string]any{"verification_ttl": in.vttl})
	case cConfigWrite:
		resp, err = c.e.write("config", map[string]any{"issuer": in.issuer, "jwks_max_age": in.maxAge})
	}
	var out cOut
	switch {
	case resp != nil && resp.IsError():
		out.status, out.err = 400, resp.Error().Error()
		if err != nil && err != logical.ErrInvalidRequest {
			out.status = 500
		}
		return out
	case err != nil:
		return cOut{status: 500, err: err.Error()}
	case resp == nil && in.kind == cConfigWrite:
		return cOut{status: 204}
	case resp == nil:
		return cOut{status: 404}
	}
	if in.kind == cJWKS || in.kind == cDiscovery {
		return parseDocument(in, resp)
	}
	out.status = 200
	var d struct {
		ActiveKID      string `json:"active_kid"`
		PendingKID     string `json:"pending_kid"`
		PromotedKID    string `json:"promoted_kid"`
		PreviousKID    string `json:"previous_kid"`
		Revoked        string `json:"revoked"`
		Rotated        bool   `json:"rotated"`
		Issuer         string `json:"issuer"`
		JWKSMaxAge     int64  `json:"jwks_max_age"`
		VerificationTT int64  `json:"verification_ttl"`
		SigningKeys    []struct {
			KID   string `json:"kid"`
			State string `json:"state"`
		} `json:"signing_keys"`
		KID   string `json:"kid"`
		Token string `json:"token"`
	}
	raw, _ := json.Marshal(resp.Data)
	if err := json.Unmarshal(raw, &d); err != nil {
		return cOut{status: 500, err: "answer does not parse: " + err.Error()}
	}
	out.active, out.pending, out.promoted, out.previous = d.ActiveKID, d.PendingKID, d.PromotedKID, d.PreviousKID
	out.revoked, out.rotated = d.Revoked, d.Rotated
	out.cfgIssuer, out.cfgMaxAge, out.cfgVTTL = d.Issuer, d.JWKSMaxAge, d.VerificationTT
	if in.kind == cRingWrite {
		out.published = []string{}
		for _, k := range d.SigningKeys {
			if k.State == "pending" || k.State == "active" || k.State == "retiring" {
				out.published = append(out.published, k.KID)
			}
		}
		sort.Strings(out.published)
	}
	if in.kind == cSign {
		out.signKID, out.token = d.KID, d.Token
		out.iss, out.iat = tokenIssuer(d.Token)
	}
	return out
}

// tokenIssuer reads iss and iat from a token's payload; the signature is
// checked after the burst by an independent verifier.
func tokenIssuer(token string) (string, int64) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", 0
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", 0
	}
	var c struct {
		Iss string `json:"iss"`
		Iat int64  `json:"iat"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return "", 0
	}
	return c.Iss, c.Iat
}

func parseDocument(in cIn, resp *logical.Response) cOut {
	out := cOut{}
	out.status, _ = resp.Data[logical.HTTPStatusCode].(int)
	if v := resp.Headers["ETag"]; len(v) == 1 {
		out.etag = v[0]
	}
	cc, _ := resp.Data[logical.HTTPCacheControlHeader].(string)
	if m := concCacheControl.FindStringSubmatch(cc); m != nil {
		out.maxAge, _ = strconv.ParseInt(m[1], 10, 64)
		out.stale, _ = strconv.ParseInt(m[2], 10, 64)
		out.ccOK = true
	}
	body, _ := resp.Data[logical.HTTPRawBody].([]byte)
	if out.status != 200 {
		return out
	}
	if in.kind == cDiscovery {
		var d struct {
			Issuer  string   `json:"issuer"`
			JWKSURI string   `json:"jwks_uri"`
			Algs    []string `json:"id_token_signing_alg_values_supported"`
		}
		if json.Unmarshal(body, &d) == nil {
			out.bodyJSON = true
			out.issuer, out.jwksURI = d.Issuer, d.JWKSURI
			sort.Strings(d.Algs)
			out.algs = strings.Join(d.Algs, ",")
		}
		return out
	}
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	if json.Unmarshal(body, &set) == nil {
		out.bodyJSON = true
		out.kids = []string{}
		for _, k := range set.Keys {
			if k.D != "" {
				// A private part in a JWKS: no model state allows it.
				out.bodyJSON = false
			}
			out.kids = append(out.kids, k.KID)
		}
		sort.Strings(out.kids)
	}
	return out
}

// initialState reads the quiescent node through its API: the settings and
// each ring's keys as keys/<name> lists them.
func (c *concNode) initialState(t *testing.T, base *concBase) *mState {
	t.Helper()
	s := &mState{rings: map[string]*mRing{}, etags: map[string]string{}}
	cfg := c.e.read("config")
	s.issuer = cfg.Data["issuer"].(string)
	s.maxAge = toInt64(t, cfg.Data["jwks_max_age"])
	for _, n := range concRings {
		r := &mRing{alg: concRingAlgs[n]}
		var d struct {
			SigningKeys []struct {
				KID      string `json:"kid"`
				State    string `json:"state"`
				RemoveAt int64  `json:"remove_at"`
			} `json:"signing_keys"`
		}
		raw, _ := json.Marshal(c.e.read("keys/" + n).Data)
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		for _, k := range d.SigningKeys {
			base.seenKIDs[k.KID] = true
			switch k.State {
			case "pending":
				r.keys = append(r.keys, mKey{kid: k.KID, state: 'P'})
			case "active":
				r.keys = append(r.keys, mKey{kid: k.KID, state: 'A', removeAt: k.RemoveAt})
			case "retiring":
				r.keys = append(r.keys, mKey{kid: k.KID, state: 'R', removeAt: k.RemoveAt})
			case "revoked":
				r.oldRevoked = append(r.oldRevoked, k.KID)
			case "removed":
				r.removed = append(r.removed, k.KID)
			default:
				t.Fatalf("unknown key state %q", k.State)
			}
		}
		s.rings[n] = r
	}
	return s.seal()
}

func toInt64(t *testing.T, v any) int64 {
	t.Helper()
	switch x := v.(type) {
	case int64:
		return x
	case int:
		return int64(x)
	case float64:
		return int64(x)
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Fatalf("not a number: %T %v", v, v)
	return 0
}

// concStats counts what the run reached; the test asserts the counts that
// say whether it proved anything.
type concStats struct {
	bursts, standby, ops, checked, inconclusive int
	byKind                                      [8]int
	notModified, yields, verified               int
}

// planRequest draws one request of a client. A revoke names {pick:N}: the
// N-th (modulo) of the kids the client knows when it sends it (the ring's
// kids at the burst's start and those its own answers named).
func planRequest(rng *rand.Rand) cIn {
	ring := concRings[rng.IntN(2)]
	// {tag} is the ETag the client last received for the document, filled
	// in when the request is sent.
	inm := func(string) string {
		switch x := rng.IntN(12); {
		case x < 4:
			return ""
		case x < 7:
			return "{tag}"
		case x < 8:
			return "W/{tag}"
		case x < 9:
			return `"not-this-one", {tag}`
		case x < 10:
			return "*"
		default:
			return `"not-this-one"`
		}
	}
	switch x := rng.IntN(100); {
	case x < 22:
		path := []string{"jwks", ".well-known/jwks.json"}[rng.IntN(2)]
		return cIn{kind: cJWKS, path: path, scope: "", inm: inm("")}
	case x < 40:
		return cIn{kind: cJWKS, path: "jwks/" + ring, scope: ring, inm: inm(ring)}
	case x < 48:
		return cIn{kind: cDiscovery, path: ".well-known/openid-configuration", inm: inm("discovery")}
	case x < 64:
		return cIn{kind: cSign, scope: ring}
	case x < 74:
		return cIn{kind: cRotate, scope: ring}
	case x < 86:
		kid := "no-such-kid"
		if rng.IntN(8) > 0 {
			kid = fmt.Sprintf("{pick:%d}", rng.IntN(1000))
		}
		return cIn{kind: cRevoke, scope: ring, kid: kid}
	case x < 92:
		return cIn{kind: cRingWrite, scope: ring, vttl: []int64{7200, 10800}[rng.IntN(2)]}
	case x < 97:
		return cIn{kind: cConfigWrite, issuer: []string{concIssuerA, concIssuerB}[rng.IntN(2)], maxAge: []int64{60, 120}[rng.IntN(2)]}
	default:
		return cIn{kind: cInvalidate, key: []string{configPath, ringPrefix + ring}[rng.IntN(2)]}
	}
}

// yieldWrite draws the write a forced yield runs between rendering a
// document and caching it, from the state s: one that changes what the
// document of scope says ("" any), so a stale document cached is visible:
// a revoke of a published key that is not the active one, or a config
// write that changes the issuer and jwks_max_age.
func yieldWrite(rng *rand.Rand, s *mState, scope string) cIn {
	ring := scope
	if scope == "" {
		ring = concRings[rng.IntN(2)]
	}
	other := concIssuerA
	if s.issuer == concIssuerA {
		other = concIssuerB
	}
	config := cIn{kind: cConfigWrite, issuer: other, maxAge: 180 - s.maxAge}
	if scope == "discovery" || rng.IntN(3) == 0 {
		return config
	}
	r := s.rings[ring]
	var kids []string
	for _, k := range r.keys {
		if k.state != 'A' {
			kids = append(kids, k.kid)
		}
	}
	if len(kids) == 0 {
		return config
	}
	return cIn{kind: cRevoke, scope: ring, kid: kids[rng.IntN(len(kids))]}
}

func scopePath(scope string) string {
	switch scope {
	case "":
		return "jwks"
	case "discovery":
		return ".well-known/openid-configuration"
	}
	return "jwks/" + scope
}

func scopeRead(scope, inm string) cIn {
	if scope == "discovery" {
		return cIn{kind: cDiscovery, path: scopePath(scope), inm: inm}
	}
	return cIn{kind: cJWKS, path: scopePath(scope), scope: scope, inm: inm}
}

// TestConcurrency guards linearizability of one node under concurrent
// requests: every history of a burst of JWKS, discovery, sign, forced
// rotate, revoke, ring and config writes (with the clock frozen) is
// explained by some order of its requests in the reference model, so no
// JWKS, ETag, 304 or max-age reflects state a write already replaced (a
// stale document cached), no write is lost, and every token is signed by
// the key active at its point in that order, and no request the model
// accepts is refused or fails (invariants 1, 3, 6, 8 and 9 of
// docs/invariants.md).
func TestConcurrency(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(concSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", concSeedEnv, v, err)
		}
	}
	bursts := 24
	if v := os.Getenv(concBurstsEnv); v != "" {
		var err error
		if bursts, err = strconv.Atoi(v); err != nil || bursts < 1 {
			t.Fatalf("%s=%q: want a positive number", concBurstsEnv, v)
		}
	}
	t.Logf("seed %d (replay: %s=%d go test -run TestConcurrency .)", seed, concSeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0x636f6e63))

	// An active node and a performance standby on one storage: every write
	// of the active node reaches the standby as an invalidation of the
	// key written, after the write, as replication delivers it.
	inner := &logical.InmemStorage{}
	clock := &fakeClock{now: testStart}
	standby := newEnvOn(t, inner, clock)
	e := newEnvOn(t, &replicating{Storage: inner, to: standby.b}, clock)
	e.mustWrite("config", map[string]any{"issuer": concIssuerA, "jwks_max_age": 60})
	for _, n := range concRings {
		e.setupRing(n, concRingAlgs[n], map[string]any{"rotation_period": "1h", "publish_lead": concLead, "verification_ttl": "2h"})
		e.mustWrite("roles/r"+n, map[string]any{"key": n, "audiences": "api", "ttl": "5m", "max_ttl": "10m"})
	}
	node := &concNode{e: e, reader: e, ctx: context.Background()}
	base := &concBase{etags: map[string]string{}, etagOf: map[string]string{}, seenKIDs: map[string]bool{}}
	tags := map[string]string{}
	var st concStats

	for burst := range bursts {
		if burst > 0 {
			concAdvance(t, rng, e)
		}
		base.now = e.clock.Now().Unix()
		// Half the bursts read and sign on the standby, which learns of
		// the writes only through invalidations.
		node.reader = e
		if rng.IntN(2) == 0 {
			node.reader = standby
			st.standby++
		}
		reader := node.reader
		initial := node.initialState(t, base)
		node.hist, node.tokens = nil, nil

		// Each client's requests, drawn before the burst starts.
		known := map[string][]string{}
		for _, n := range concRings {
			r := initial.rings[n]
			for _, k := range r.keys {
				known[n] = append(known[n], k.kid)
			}
			known[n] = append(append(known[n], r.oldRevoked...), r.removed...)
		}
		plans := make([][]cIn, concClients)
		for cl := range plans {
			for range concOpsPerCl {
				plans[cl] = append(plans[cl], planRequest(rng))
			}
		}
		// Half the bursts yield once, at a render drawn at random, to a
		// write; every burst does in its coda.
		var fired atomic.Bool
		renders := atomic.Int32{}
		yieldAt := int32(-1)
		if rng.IntN(2) == 0 {
			yieldAt = int32(rng.IntN(8))
		}
		midWrite := yieldWrite(rng, initial, "")
		reader.b.afterRender = func() {
			if renders.Add(1)-1 == yieldAt && fired.CompareAndSwap(false, true) {
				node.run(concYieldClient, midWrite)
			}
		}

		start := make(chan struct{})
		var wg sync.WaitGroup
		for cl := range concClients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				// The client learns ETags and kids as a real one would.
				mine := map[string]string{}
				for k, v := range tags {
					mine[k] = v
				}
				kids := map[string][]string{}
				for k, v := range known {
					kids[k] = append([]string(nil), v...)
				}
				for _, in := range plans[cl] {
					scope := in.scope
					if in.kind == cDiscovery {
						scope = "discovery"
					}
					if strings.Contains(in.inm, "{tag}") {
						if mine[scope] == "" {
							in.inm = ""
						}
						in.inm = strings.ReplaceAll(in.inm, "{tag}", mine[scope])
					}
					var n int
					if _, err := fmt.Sscanf(in.kid, "{pick:%d}", &n); err == nil && len(kids[scope]) > 0 {
						in.kid = kids[scope][n%len(kids[scope])]
					}
					out := node.run(cl, in)
					if out.etag != "" {
						mine[scope] = out.etag
					}
					for _, k := range []string{out.active, out.pending, out.promoted} {
						if k != "" && !slices.Contains(kids[scope], k) {
							kids[scope] = append(kids[scope], k)
						}
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		reader.b.afterRender = nil
		if yieldAt >= 0 && fired.Load() {
			st.yields++
		}

		// The coda: drop the cache, yield to a write at the next render,
		// then read every document twice, the second time with the ETag
		// the first returned: a stale document cached by that render is
		// served here, and each tag must answer 304.
		node.run(concCodaClient, cIn{kind: cInvalidate, key: configPath})
		codaScope := []string{"", "a", "b", "discovery"}[rng.IntN(4)]
		// (A scratch base: the kids this burst made are not yet "seen".)
		codaWrite := yieldWrite(rng, node.initialState(t, &concBase{seenKIDs: map[string]bool{}}), codaScope)
		var codaFired atomic.Bool
		reader.b.afterRender = func() {
			if codaFired.CompareAndSwap(false, true) {
				node.run(concYieldClient, codaWrite)
			}
		}
		node.run(concCodaClient, scopeRead(codaScope, ""))
		reader.b.afterRender = nil
		if !codaFired.Load() {
			t.Fatalf("seed %d burst %d: the read after an invalidation did not render (the forced interleaving proves nothing)", seed, burst)
		}
		st.yields++
		var allBody []string
		for _, scope := range []string{"", "a", "b", "discovery"} {
			first := node.run(concCodaClient, scopeRead(scope, ""))
			second := node.run(concCodaClient, scopeRead(scope, first.etag))
			if second.status == 304 {
				st.notModified++
			}
			tags[scope] = first.etag
			if scope == "" {
				allBody = first.kids
			}
		}
		for _, n := range concRings {
			node.run(concCodaClient, cIn{kind: cSign, scope: n})
		}

		// Check the history.
		model := concModel(base)
		model.Init = func() any { return initial }
		res, info := porcupine.CheckOperationsVerbose(model, node.hist, 20*time.Second)
		st.bursts++
		st.ops += len(node.hist)
		for _, op := range node.hist {
			st.byKind[op.Input.(cIn).kind]++
		}
		switch res {
		case porcupine.Illegal:
			path := fmt.Sprintf("%s/concurrency-%d-%d.html", t.TempDir(), seed, burst)
			_ = porcupine.VisualizePath(model, info, path)
			t.Fatalf("seed %d burst %d (time %d, node under test: %s): the history is not linearizable against the model.\nState before the burst: %s\nHistory, by call:\n%s\n%s\nVisualization: %s\n(replay: %s=%d)",
				seed, burst, base.now, map[bool]string{true: "the standby", false: "the active node"}[reader == standby], initial.key, describeHistory(node.hist), longestPrefix(model, info, node.hist), path, concSeedEnv, seed)
		case porcupine.Unknown:
			st.inconclusive++
			t.Logf("seed %d burst %d: the check timed out (inconclusive, counted)", seed, burst)
		default:
			st.checked++
		}
		// Every 200 in the run: one content, one ETag.
		for _, op := range node.hist {
			in, out := op.Input.(cIn), op.Output.(cOut)
			if out.status != 200 || (in.kind != cJWKS && in.kind != cDiscovery) {
				continue
			}
			content := "jwks:" + strings.Join(out.kids, ",")
			if in.kind == cDiscovery {
				content = "discovery:" + out.issuer + "|" + out.algs
			}
			if e, ok := base.etags[content]; ok && e != out.etag {
				t.Fatalf("seed %d burst %d: %s served ETag %s, earlier %s for the same content", seed, burst, in, out.etag, e)
			}
			if c, ok := base.etagOf[out.etag]; ok && c != content {
				t.Fatalf("seed %d burst %d: ETag %s names two contents: %s and %s", seed, burst, out.etag, c, content)
			}
			base.etags[content], base.etagOf[out.etag] = out.etag, content
			for _, k := range out.kids {
				base.seenKIDs[k] = true
			}
		}
		// Tokens verify with an independent verifier against the JWKS
		// served after the burst, while their key is still in it.
		body := concJWKSBody(t, reader)
		for _, tok := range node.tokens {
			base.seenKIDs[tok.signKID] = true
			if !slices.Contains(allBody, tok.signKID) {
				continue // revoked in the burst
			}
			if _, err := verifyJose(t, tok.token, body, time.Unix(base.now, 0)); err != nil {
				t.Fatalf("seed %d burst %d: a token of %s does not verify: %v", seed, burst, short(tok.signKID), err)
			}
			st.verified++
		}
		for _, op := range node.hist {
			o := op.Output.(cOut)
			for _, k := range []string{o.active, o.pending, o.promoted, o.previous} {
				if k != "" {
					base.seenKIDs[k] = true
				}
			}
		}
	}
	t.Logf("%d bursts (%d on the standby), %d requests (%s), %d histories linearizable, %d inconclusive; %d forced yields, %d 304s, %d tokens verified",
		st.bursts, st.standby, st.ops, kindCounts(st.byKind), st.checked, st.inconclusive, st.yields, st.notModified, st.verified)
	// By construction: every coda yields, answers four 304s and signs twice
	// with keys no request revoked after.
	if st.yields < bursts || st.notModified != 4*bursts || st.verified < 2*bursts {
		t.Fatalf("seed %d: %d yields, %d 304s, %d tokens verified over %d bursts: want at least %d, exactly %d, at least %d",
			seed, st.yields, st.notModified, st.verified, bursts, bursts, 4*bursts, 2*bursts)
	}
	if st.checked == 0 {
		t.Fatalf("seed %d: no history was checked to the end (%d inconclusive)", seed, st.inconclusive)
	}
}

func kindCounts(c [8]int) string {
	var parts []string
	for k, n := range c {
		parts = append(parts, fmt.Sprintf("%s %d", concKindNames[k], n))
	}
	return strings.Join(parts, ", ")
}

// longestPrefix describes the longest order of requests the model
// accepts, the state it ends in, and the requests that cannot follow.
func longestPrefix(model porcupine.Model, info porcupine.LinearizationInfo, all []porcupine.Operation) string {
	var best []porcupine.Operation
	for _, part := range info.PartialLinearizationsOperations() {
		for _, l := range part {
			if len(l) > len(best) {
				best = l
			}
		}
	}
	var b strings.Builder
	st := model.Init()
	b.WriteString("Longest order the model accepts:\n")
	done := map[int64]bool{}
	for _, op := range best {
		_, st = model.Step(st, op.Input, op.Output)
		done[op.Call] = true
		fmt.Fprintf(&b, "  [%3d,%3d] %s -> %s\n", op.Call, op.Return, op.Input.(cIn), op.Output.(cOut))
	}
	fmt.Fprintf(&b, "State after it: %s\nRequests that cannot follow it:\n", model.DescribeState(st))
	for _, op := range all {
		if done[op.Call] {
			continue
		}
		if ok, _ := model.Step(st, op.Input, op.Output); !ok {
			fmt.Fprintf(&b, "  [%3d,%3d] %s -> %s\n", op.Call, op.Return, op.Input.(cIn), op.Output.(cOut))
		}
	}
	return b.String()
}

func describeHistory(h []porcupine.Operation) string {
	ops := append([]porcupine.Operation(nil), h...)
	sort.Slice(ops, func(i, j int) bool { return ops[i].Call < ops[j].Call })
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "  [%3d,%3d] client %d: %s -> %s\n", op.Call, op.Return, op.ClientId, op.Input.(cIn), op.Output.(cOut))
	}
	return b.String()
}

func concJWKSBody(t *testing.T, e *testEnv) []byte {
	t.Helper()
	status, body, _ := e.jwks("jwks")
	if status != 200 {
		t.Fatalf("jwks: %d", status)
	}
	return body
}

// concAdvance moves the clock between bursts (never during one): by half
// an hour to four, then sometimes to one second either side of a key's
// retirement or removal, or just before a removal (where max-age counts
// down to it), or onto an activation. It then runs maintenance, and moves
// on past any activation due within publish_lead plus two ticks: a write
// then makes at most the one key its answer names (pending_kid), so the
// model learns every kid from the answer that made it.
func concAdvance(t *testing.T, rng *rand.Rand, e *testEnv) {
	t.Helper()
	e.clock.Advance(time.Duration(1800+rng.IntN(12600)) * time.Second)
	now := e.clock.Now().Unix()
	if rng.IntN(2) == 0 {
		var stamps []int64
		for _, n := range concRings {
			for _, k := range e.ring(n).Keys {
				for _, ts := range []int64{k.ActivateAt, k.RetireAt, k.RemoveAt} {
					if ts > now+1 && ts < now+4*3600 {
						stamps = append(stamps, ts)
					}
				}
			}
		}
		if len(stamps) > 0 {
			sort.Slice(stamps, func(i, j int) bool { return stamps[i] < stamps[j] })
			ts := stamps[rng.IntN(len(stamps))]
			target := ts + int64(rng.IntN(3)) - 1
			if rng.IntN(3) == 0 {
				target = ts - 1 - int64(rng.IntN(150))
			}
			if target > now {
				e.clock.Advance(time.Duration(target-now) * time.Second)
			}
		}
	}
	for range 10 {
		if err := e.b.periodic(context.Background(), &logical.Request{Storage: e.storage, Operation: logical.RollbackOperation}); err != nil {
			t.Fatalf("maintenance: %v", err)
		}
		now = e.clock.Now().Unix()
		due := int64(0)
		for _, n := range concRings {
			for _, k := range e.ring(n).Keys {
				if k.RevokedAt == 0 && k.ActivateAt > now && k.ActivateAt <= now+concLead+2*maintenanceTickSeconds+1 {
					due = max(due, k.ActivateAt)
				}
			}
		}
		if due == 0 {
			return
		}
		e.clock.Advance(time.Duration(due-now+int64(rng.IntN(3))) * time.Second)
	}
	t.Fatal("an activation is always due within the lead: the bursts' precondition cannot be met")
}

// replicating is the active node's view of storage: each write reaches the
// standby as an invalidation of its key once it is stored.
type replicating struct {
	logical.Storage
	to *backend
}

func (s *replicating) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := s.Storage.Put(ctx, e); err != nil {
		return err
	}
	s.to.Backend.InvalidateKey(ctx, e.Key)
	return nil
}

func (s *replicating) Delete(ctx context.Context, key string) error {
	if err := s.Storage.Delete(ctx, key); err != nil {
		return err
	}
	s.to.Backend.InvalidateKey(ctx, key)
	return nil
}

// writeOnGet runs write once, just before the first read of path: a write
// of another request landing between two reads of this one.
type writeOnGet struct {
	logical.Storage
	path  string
	write func()
	fired atomic.Bool
}

func (s *writeOnGet) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if key == s.path && s.write != nil && s.fired.CompareAndSwap(false, true) {
		s.write()
	}
	return s.Storage.Get(ctx, key)
}

// A sign that loaded the ring before a revoke of its active key, and read
// that key's private half after the revoke deleted it, answered a 500
// (invariant 9: a 5xx only when storage fails). It signs with the key the
// revoke left active, a token that verifies against the JWKS after it.
func TestDefectSignDuringRevokeOfItsKey(t *testing.T) {
	t.Parallel()
	s := &writeOnGet{Storage: &logical.InmemStorage{}}
	e := newEnvOn(t, s, &fakeClock{now: testStart})
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	a, p := activeAndPending(e.ring("k").Keys, e.clock.Now().Unix())
	active, pending := e.ring("k").Keys[a], e.ring("k").Keys[p]
	// The next sign reads the private half from storage.
	e.b.dropSigner(active.storeID())
	s.path = privatePath("k", active.storeID())
	s.write = func() { e.mustWrite("keys/k/revoke", map[string]any{"kid": active.KID}) }

	resp, err := e.write("sign/r", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("sign during a revoke of its key: err=%v resp=%s", err, respErr(resp))
	}
	if !s.fired.Load() {
		t.Fatal("the revoke did not run between loading the ring and reading the private half (the test proves nothing)")
	}
	if kid := resp.Data["kid"]; kid != pending.KID {
		t.Fatalf("signed with %v, want %s, the key the revoke promoted", kid, pending.KID)
	}
	_, body, _ := e.jwks("jwks")
	if _, err := verifyJose(t, resp.Data["token"].(string), body, e.clock.Now()); err != nil {
		t.Fatalf("the token does not verify against the JWKS after the revoke: %v", err)
	}
}

// A private half lost from storage while the ring still names its key is a
// storage failure: the sign fails (a 5xx) instead of retrying for ever.
func TestSignWithLostPrivateHalfFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	a, _ := activeAndPending(e.ring("k").Keys, e.clock.Now().Unix())
	id := e.ring("k").Keys[a].storeID()
	e.b.dropSigner(id)
	if err := e.storage.Delete(context.Background(), privatePath("k", id)); err != nil {
		t.Fatal(err)
	}
	resp, err := e.write("sign/r", nil)
	if !errors.Is(err, errPrivateGone) {
		t.Fatalf("sign with a lost private half: err=%v resp=%s, want the missing private half", err, respErr(resp))
	}
}
