package jwtrotor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"pgregory.net/rapid"
)

// The actions of the "publish" set: publishers backed by in-memory stores
// (memStore), their faults, upload passes run the way the plugin's ticker
// runs them, small clock steps between passes so the publisher gate gets
// its chance near activations, a crash between an upload and the write of
// the publisher's state, and max_activation_delay set on rings. The checks
// read the stores' bytes and the plugin's answers (keys/<ring>, jwks,
// verifiers, metrics), never the plugin's own functions, and predict from
// docs/publishing.md and docs/invariants.md (publishers).

// Publisher names: few, so that operations meet. Each has a store of its
// own, addressed by a URL or bucket that names it, which outlives the
// publisher (deleting a publisher leaves its bucket as it was).
var modelPubNames = []string{"p1", "p2", "p3"}

// Distinctive credential values: none may appear in any answer, log line,
// stored state or copy.
func modelCreds(name string) map[string]string {
	return map[string]string{
		"access_key_id":     "AKIAMODEL" + strings.ToUpper(name) + "QZXKEYID",
		"secret_access_key": "model-s3-secret-" + name + "-Qx7Vn2",
		"session_token":     "model-session-" + name + "-Tk4Wd8",
		"username":          "model-dav-user-" + name + "-U3kq",
		"password":          "model-dav-pass-" + name + "-P9wz",
	}
}

// modelRetrySeconds and modelReassertSeconds are docs/publishing.md's
// bounds: a failed upload is retried at least every 10 seconds, and a copy
// is re-asserted (an object deleted out of band written again) at least
// every minute.
const (
	modelRetrySeconds    = 10
	modelReassertSeconds = 60
	// modelGateHorizon: the publisher gate decides on an activation at the
	// latest this many seconds before it (docs/publishing.md).
	modelGateHorizon = 3
	// modelAttemptTimeout stands in for the plugin's attempt timeout (8 s),
	// which a hanging store runs into. It can be short: a memStore that is
	// not hanging never reads its context, so no other call can run into
	// it, and every pass at a hanging store waits for it.
	modelAttemptTimeout = 10 * time.Millisecond
)

var modelPubStats = newCounters()

type counters struct {
	mu sync.Mutex
	n  map[string]int64
}

func newCounters() *counters { return &counters{n: map[string]int64{}} }

func (c *counters) add(k string) {
	c.mu.Lock()
	c.n[k]++
	c.mu.Unlock()
}

func (c *counters) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(c.n)) {
		fmt.Fprintf(&b, " %s=%d", k, c.n[k])
	}
	return b.String()
}

// pubRecord is a publisher as the model last wrote it successfully.
type pubRecord struct {
	typ, ring, publicURL, prefix string
	required                     bool
	// profile as last written ("" until one is: generic).
	profile string
}

func (p *pubRecord) object() string { return p.prefix + defaultJWKSObject }

// covers reports whether p's copy is to hold ring's keys.
func (p *pubRecord) covers(ring string) bool { return p.ring == "" || p.ring == ring }

// gateChance is what the model saw of a ring's next activation right after
// a pass: the gate's last chance to hold it.
type gateChance struct {
	t, at    int64
	kid      string
	missing  bool // a required copy (bytes) lacked the kid
	delay    int64
	required bool
}

type modelPub struct {
	mu     sync.Mutex
	stores map[string]*memStore
	pubs   map[string]*pubRecord
	lost   map[string]int64 // stores that lost their copy out of band: when
	// upSince is when each store last came back (0: never down), by the
	// wall clock, which the plugin's retries wait by.
	upSince map[string]int64
	// passed: the step ran a pass ("pass", or "hang" when a store hung and
	// the pass ran under a short deadline).
	passed string
	// prevCopies are the kids each publisher's copy held at the previous
	// check; prevActive the active kid of each ring; prevNow the time.
	prevCopies map[string][]string
	prevOK     map[string]bool
	prevActive map[string]string
	prevNow    int64
	chance     map[string]gateChance
	logsSeen   map[*bytes.Buffer]int
}

func (m *model) publish() *modelPub {
	if m.pub == nil {
		m.pub = &modelPub{stores: map[string]*memStore{}, pubs: map[string]*pubRecord{}, lost: map[string]int64{},
			upSince: map[string]int64{}, prevCopies: map[string][]string{}, prevOK: map[string]bool{}, prevActive: map[string]string{},
			chance: map[string]gateChance{}, logsSeen: map[*bytes.Buffer]int{}}
	}
	return m.pub
}

func (mp *modelPub) store(name string) *memStore {
	mp.mu.Lock()
	defer mp.mu.Unlock()
	if mp.stores[name] == nil {
		mp.stores[name] = newMemStore("")
	}
	return mp.stores[name]
}

// storeName is the publisher name a URL or bucket of the model's names.
func storeName(p *publisherEntry) string {
	for _, name := range modelPubNames {
		if p.URL == davURL(name) || p.Bucket == name+"-bucket" {
			return name
		}
	}
	return ""
}

func davURL(name string) string    { return "https://" + name + ".dav.example.com/" }
func publicURL(name string) string { return "https://" + name + ".pub.example.com/" }

// wirePublish makes node b's publishers write to the model's stores and
// read public URLs from them: <name>.pub.example.com is the store of that
// name under the publisher's prefix, and the issuer's URL is p1's.
func (m *model) wirePublish(b *backend) {
	b.pub.attemptTimeout = modelAttemptTimeout
	b.newSink = func(p *publisherEntry, _ bool) (sink, error) {
		mp := m.publish()
		name := storeName(p)
		if name == "" {
			return nil, fmt.Errorf("no model store for %s%s", p.URL, p.Bucket)
		}
		return mp.store(name), nil
	}
	b.readPublic = func(ctx context.Context, url string) ([]byte, string, error) {
		mp := m.publish()
		for _, name := range modelPubNames {
			rest, ok := strings.CutPrefix(url, publicURL(name))
			if !ok && name == "p1" {
				rest, ok = strings.CutPrefix(url, modelIssuer+"/")
			}
			if !ok {
				continue
			}
			mp.mu.Lock()
			rec := mp.pubs[name]
			mp.mu.Unlock()
			if rec == nil {
				break
			}
			body, etag, err := mp.store(name).get(ctx, rec.prefix+rest)
			if se, ok := err.(*sinkError); ok {
				se.Op = "read_public"
			}
			return body, etag, err
		}
		return nil, "", &sinkError{Op: "read_public", Object: url, Reason: reasonUnreachable}
	}
}

// --- actions ---

func (m *model) pubWrite(t *rapid.T) {
	name := rapid.SampledFrom(modelPubNames).Draw(t, "publisher")
	typ := rapid.SampledFrom([]string{"webdav", "s3"}).Draw(t, "type")
	required := rapid.Bool().Draw(t, "required")
	ring := rapid.SampledFrom(append([]string{"", ""}, modelRings...)).Draw(t, "pub-ring")
	pub := rapid.IntRange(0, 2).Draw(t, "public-url")
	prefix := rapid.SampledFrom([]string{"", "", "t/"}).Draw(t, "prefix")
	session := rapid.Bool().Draw(t, "session-token")
	data := map[string]any{"type": typ, "required": required, "ring": ring, "prefix": prefix}
	creds := modelCreds(name)
	if typ == "s3" {
		data["bucket"], data["region"] = name+"-bucket", "eu-west-1"
		data["access_key_id"], data["secret_access_key"] = creds["access_key_id"], creds["secret_access_key"]
		if session {
			data["session_token"] = creds["session_token"]
		}
	} else {
		data["url"], data["username"], data["password"] = davURL(name), creds["username"], creds["password"]
	}
	switch {
	case pub == 1:
		data["public_url"] = publicURL(name)
	case pub == 2 && name == "p1":
		data["public_url"] = modelIssuer + "/"
	default:
		data["public_url"] = ""
	}
	mp := m.publish()
	mp.store(name)
	_, out := m.do(m.a, logical.UpdateOperation, "publishers/"+name, data)
	modelPubStats.add(fmt.Sprintf("action.write.%s.required=%v.ring=%v.public=%d.%s", typ, required, ring != "", pub, map[outcome]string{ok2xx: "ok", bad4xx: "refused", err5xx: "5xx"}[out]))
	if out == ok2xx {
		mp.mu.Lock()
		profile := ""
		if old := mp.pubs[name]; old != nil {
			profile = old.profile // an update keeps what it does not name
		}
		mp.pubs[name] = &pubRecord{typ: typ, ring: ring, publicURL: data["public_url"].(string), prefix: prefix, required: required, profile: profile}
		mp.mu.Unlock()
	}
}

// modelProfileTakes is docs/publishing.md's profiles table: the algorithms
// each profile's verifiers take (nil: every algorithm).
var modelProfileTakes = map[string][]string{
	"generic": nil,
	"aws":     {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"},
	"gcp":     {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"},
	"azure":   {"RS256"},
}

func profileTakes(profile, alg string) bool {
	takes, ok := modelProfileTakes[profile]
	return !ok || takes == nil || slices.Contains(takes, alg)
}

// pubProfile gives a publisher a profile. docs/publishing.md: the write
// is refused when a ring the publisher covers publishes, or will make, a
// key of an algorithm the profile does not take; otherwise it succeeds,
// unless the profile's key cap would be passed.
func (m *model) pubProfile(t *rapid.T) {
	name := rapid.SampledFrom(modelPubNames).Draw(t, "publisher")
	profile := rapid.SampledFrom([]string{"generic", "aws", "gcp", "azure", "azure"}).Draw(t, "profile")
	mp := m.publish()
	mp.mu.Lock()
	rec := mp.pubs[name]
	mp.mu.Unlock()
	algs, complete := []string{}, false
	if rec != nil {
		algs, complete = m.coveredAlgs(rec.ring)
	}
	// aws takes only an issuer that is https, without port or query.
	issuer, _ := m.pubRead("config").Data["issuer"].(string)
	u, err := url.Parse(issuer)
	issuerOK := profile != "aws" || (err == nil && u.Scheme == "https" && u.Host != "" && u.Port() == "" && u.RawQuery == "")
	resp, out := m.do(m.a, logical.UpdateOperation, "publishers/"+name, map[string]any{"profile": profile})
	if rec == nil {
		return
	}
	carries := !slices.ContainsFunc(algs, func(a string) bool { return !profileTakes(profile, a) }) && issuerOK
	modelPubStats.add(fmt.Sprintf("action.profile.%s.carries=%v.%s", profile, carries, map[outcome]string{ok2xx: "ok", bad4xx: "refused", err5xx: "5xx"}[out]))
	switch {
	case out == ok2xx && !carries:
		m.t.Fatalf("publisher %s took profile=%s, though the rings it covers (%q) have keys of %v and the issuer is %q", name, profile, rec.ring, algs, issuer)
	case out != ok2xx && carries && complete && !strings.Contains(respErr(resp), "at most 100"):
		m.t.Fatalf("publisher %s refused profile=%s, which takes every algorithm of the rings it covers (%v): %s", name, profile, algs, respErr(resp))
	}
	if out == ok2xx {
		mp.mu.Lock()
		rec.profile = profile
		mp.mu.Unlock()
	}
}

// coveredAlgs are the algorithms a publisher of ring ("": every ring) is
// given or will be: the keys its scope serves, every live key and trusted
// key of its rings, and the algorithm of the keys they will make. complete
// is false when a deleted ring still drains keys into the scope (its
// unpublished keys cannot be read).
func (m *model) coveredAlgs(ring string) ([]string, bool) {
	now := m.a.b.clock.read().Schedule
	set := map[string]bool{}
	known := map[string]bool{}
	for _, name := range modelRings {
		if ring != "" && name != ring {
			continue
		}
		resp := m.pubRead("keys/" + name)
		if resp == nil || resp.IsError() {
			continue
		}
		set[resp.Data["algorithm"].(string)] = true
		keys, _ := resp.Data["signing_keys"].([]map[string]any)
		for _, k := range keys {
			known[k["kid"].(string)] = true
			rm, _ := k["remove_at"].(int64)
			if rv, _ := k["revoked_at"].(int64); rv == 0 && (rm == 0 || rm > now) {
				set[k["alg"].(string)] = true
			}
		}
		trusted, _ := resp.Data["trusted_keys"].([]map[string]any)
		for _, k := range trusted {
			known[k["kid"].(string)] = true
			if exp, _ := k["expires_at"].(int64); exp > now {
				set[k["alg"].(string)] = true
			}
		}
	}
	complete := true
	var doc struct {
		Keys []struct {
			KID string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if json.Unmarshal(m.served(ring), &doc) == nil {
		for _, k := range doc.Keys {
			set[k.Alg] = true
			complete = complete && known[k.KID]
		}
	}
	return slices.Sorted(maps.Keys(set)), complete
}

func (m *model) pubDelete(t *rapid.T) {
	name := rapid.SampledFrom(modelPubNames).Draw(t, "publisher")
	mp := m.publish()
	if _, out := m.do(m.a, logical.DeleteOperation, "publishers/"+name, nil); out == ok2xx {
		modelPubStats.add("action.delete")
		mp.mu.Lock()
		delete(mp.pubs, name)
		mp.mu.Unlock()
	}
}

// storeFault makes a store fail (down, answering 5xx or 403, hanging),
// lose its copy out of band, or come back.
func (m *model) storeFault(t *rapid.T) {
	name := rapid.SampledFrom(modelPubNames).Draw(t, "publisher")
	kind := rapid.SampledFrom([]string{"down", "server", "denied", "hang", "lose", "back", "back"}).Draw(t, "fault")
	mp := m.publish()
	st := mp.store(name)
	modelPubStats.add("action.fault." + kind)
	now := m.a.b.clock.read().Schedule
	switch kind {
	case "down":
		st.set(reasonUnreachable, false)
	case "server":
		st.set(reasonServer, false)
	case "denied":
		st.set(reasonDenied, false)
	case "hang":
		st.set("", true)
	case "back":
		if st.fault != "" || st.hang {
			mp.upSince[name] = m.a.b.clock.read().Wall
		}
		st.set("", false)
	case "lose":
		mp.mu.Lock()
		rec := mp.pubs[name]
		mp.mu.Unlock()
		if rec == nil {
			return
		}
		if _, ok := st.object(rec.object()); ok {
			st.remove(rec.object())
			mp.lost[name] = now
		}
	}
}

// pass runs one upload pass as the plugin's ticker does.
func (m *model) pass() {
	mp := m.publish()
	mp.passed = "pass"
	for _, st := range mp.stores {
		if st.hang {
			mp.passed = "hang"
		}
	}
	m.a.b.publishPass(context.Background(), m.s, true)
	m.opNow = m.a.b.clock.read().Schedule
	m.maxSchedule = max(m.maxSchedule, m.opNow)
	modelPubStats.add("action.pass." + mp.passed)
}

func (m *model) publishPassAction(t *rapid.T) { m.pass() }

// tick is a second or three of time, then a pass.
func (m *model) tick(t *rapid.T) {
	m.clock.Advance(time.Duration(rapid.IntRange(1, 3).Draw(t, "seconds")) * time.Second)
	modelPubStats.add("action.tick")
	m.pass()
}

// passNear steps time to a few seconds before a ring's next activation,
// then runs a pass: the publisher gate's moment.
func (m *model) passNear(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	before := rapid.IntRange(0, modelGateHorizon+1).Draw(t, "before")
	r := m.pubRing(ring)
	now := m.a.b.clock.read().Schedule
	if r != nil {
		for _, k := range r.keys {
			if k.state == "pending" {
				if d := k.activate - int64(before) - now; d > 0 && d <= 7*86400 {
					m.clock.Advance(time.Duration(d) * time.Second)
					modelPubStats.add(fmt.Sprintf("action.near.%d", before))
				}
				break
			}
		}
	}
	m.pass()
}

// pubCrash fails the first write of a publisher's state that follows a
// write to a store, as a crash between an upload and that write would, runs
// a pass, and restarts the node.
func (m *model) pubCrash(t *rapid.T) {
	mp := m.publish()
	puts := func() int {
		n := 0
		for _, st := range mp.stores {
			st.mu.Lock()
			n += st.puts
			st.mu.Unlock()
		}
		return n
	}
	before := puts()
	m.s.mu.Lock()
	m.s.failNext = func(key string) bool { return strings.HasPrefix(key, publisherStatePrefix) && puts() > before }
	m.s.mu.Unlock()
	m.pass()
	m.s.mu.Lock()
	if m.s.failNext == nil {
		modelPubStats.add("action.crash.state-lost")
	}
	m.s.failNext = nil
	m.s.mu.Unlock()
	modelPubStats.add("action.crash")
	// An upload whose outcome the crash lost counts as failed where the
	// publisher was failing before: its retry may wait a backoff from now.
	wall := m.a.b.clock.read().Wall
	for name := range mp.stores {
		mp.upSince[name] = max(mp.upSince[name], wall)
	}
	m.accepted()
	m.restartActive()
	// The new process may resume at another schedule time than the pass
	// ran at: what the pass wrote is judged at the next pass.
	m.pub.passed = "crash"
}

func (m *model) maxDelay(t *rapid.T) {
	ring := rapid.SampledFrom(modelRings).Draw(t, "ring")
	delay := rapid.SampledFrom([]int{0, 10, 30, 60, 300}).Draw(t, "delay")
	_, out := m.do(m.a, logical.UpdateOperation, "keys/"+ring, map[string]any{"max_activation_delay": delay})
	modelPubStats.add(fmt.Sprintf("action.max-delay.%v", out == ok2xx))
}

// --- reading the plugin through its API ---

// read answers path on the active node without going through m.do: these
// reads change nothing and tell the tracker nothing.
func (m *model) pubRead(path string) *logical.Response {
	resp, err := m.a.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: path, Storage: m.s, MountPoint: "jwt/",
		Connection: &logical.Connection{RemoteAddr: "203.0.113.250:1"},
	})
	if err != nil {
		m.checkNoCredentials(path, nil, err)
		m.t.Fatalf("read %s: %v", path, err)
	}
	m.checkNoCredentials(path, resp, nil)
	return resp
}

type pubKey struct {
	kid, state, note                   string
	activate, remove, revoked, publish int64
	forced                             bool
}

type pubRing struct {
	delay   int64
	keys    []pubKey
	trusted map[string]int64 // kid: expires_at
}

func (m *model) pubRing(name string) *pubRing {
	resp := m.pubRead("keys/" + name)
	if resp == nil || resp.IsError() {
		return nil
	}
	num := func(d map[string]any, f string) int64 { v, _ := d[f].(int64); return v }
	r := &pubRing{delay: num(resp.Data, "max_activation_delay"), trusted: map[string]int64{}}
	raw, _ := resp.Data["signing_keys"].([]map[string]any)
	for _, k := range raw {
		note, _ := k["gate_note"].(string)
		forced, _ := k["forced"].(bool)
		r.keys = append(r.keys, pubKey{kid: k["kid"].(string), state: k["state"].(string), note: note, forced: forced,
			activate: num(k, "activate_at"), remove: num(k, "remove_at"), revoked: num(k, "revoked_at"), publish: num(k, "publish_at")})
	}
	tr, _ := resp.Data["trusted_keys"].([]map[string]any)
	for _, k := range tr {
		r.trusted[k["kid"].(string)] = num(k, "expires_at")
	}
	return r
}

// jwksKidsOf parses a JWKS document's kids, sorted.
func jwksKidsOf(body []byte) ([]string, bool) {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if json.Unmarshal(body, &set) != nil {
		return nil, false
	}
	kids := []string{}
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	slices.Sort(kids)
	return kids, true
}

// served is the JWKS the plugin serves for a publisher's scope: the mount's,
// or its ring's ({"keys":[]} once the ring is gone).
func (m *model) served(ring string) []byte {
	path := "jwks"
	if ring != "" {
		path = "jwks/" + ring
	}
	_, body := m.fetchDoc(m.a, path)
	if body == nil {
		return []byte(`{"keys":[]}`)
	}
	return body
}

var heldNoteRE = regexp.MustCompile(`^activation delayed (\d+)s \(at most (\d+)s\)`)

// atCap reports whether a key with gate note note activates at its
// scheduled time plus max_activation_delay: the note of a held key says
// how far past its scheduled time it was put, and the most it may be.
func atCap(note string, delay int64) bool {
	mt := heldNoteRE.FindStringSubmatch(note)
	if mt == nil {
		return false
	}
	x, _ := strconv.ParseInt(mt[1], 10, 64)
	y, _ := strconv.ParseInt(mt[2], 10, 64)
	return x >= y || x >= delay
}

// --- invariants ---

// checkPublishing holds the publishers to docs/invariants.md (publishers)
// after every step of a sequence that has drawn a publish action.
func (m *model) checkPublishing() {
	mp := m.pub
	if mp == nil {
		return
	}
	passed := mp.passed
	mp.passed = ""
	now := m.a.b.clock.read().Schedule
	rings := map[string]*pubRing{}
	for _, name := range modelRings {
		if r := m.pubRing(name); r != nil {
			rings[name] = r
		}
	}
	copies := map[string][]string{}
	present := map[string]bool{}
	objects := map[string]memObject{}
	for name, rec := range mp.pubs {
		o, ok := mp.store(name).object(rec.object())
		kids := []string{}
		if ok {
			var good bool
			if kids, good = jwksKidsOf(o.body); !good {
				m.t.Fatalf("publisher %s's copy is not a JWKS: %q", name, o.body)
			}
			delete(mp.lost, name)
		}
		copies[name], present[name], objects[name] = kids, ok, o
	}
	m.checkPubCredentials()
	// A pass followed by a restart ("crash") ran at a schedule time the
	// new process may not resume at: its outcome is judged at the next
	// pass, like its copies.
	m.checkPubReport(rings, copies, passed == "pass" || passed == "hang", now)
	if passed == "pass" || passed == "hang" {
		m.checkCopies(rings, objects, present, now)
		m.recordChances(rings, copies, now)
	}
	m.checkActivations(rings, now)
	mp.prevCopies, mp.prevOK, mp.prevNow = copies, present, now
	for _, name := range modelRings {
		mp.prevActive[name] = ""
		if r := rings[name]; r != nil {
			for _, k := range r.keys {
				if k.state == "active" {
					mp.prevActive[name] = k.kid
				}
			}
		}
	}
}

// settled reports whether the store of publisher name has been up long
// enough for a failed upload to be retried (docs/publishing.md: within 10
// seconds), and holds nothing lost out of band that a re-assertion has not
// yet had to restore.
func (mp *modelPub) settled(name string, now, wall int64) bool {
	st := mp.store(name)
	if st.fault != "" || st.hang || wall < mp.upSince[name]+modelRetrySeconds {
		return false
	}
	if at, ok := mp.lost[name]; ok && now < at+modelReassertSeconds {
		return false
	}
	return true
}

// checkCopies (invariants b and d): after a pass, the copy of every settled
// store is byte for byte what the plugin serves for the publisher's scope
// (so a revoked kid is gone), and its max-age runs past neither
// jwks_max_age nor the first removal of a kid it holds.
func (m *model) checkCopies(rings map[string]*pubRing, objects map[string]memObject, present map[string]bool, now int64) {
	mp := m.pub
	maxAge := int64(defaultJWKSMaxAgeSeconds)
	if c := m.pubRead("config"); c != nil {
		if v, ok := c.Data["jwks_max_age"].(int64); ok {
			maxAge = v
		}
	}
	for _, name := range slices.Sorted(maps.Keys(mp.pubs)) {
		rec := mp.pubs[name]
		if !mp.settled(name, now, m.a.b.clock.read().Wall) {
			modelPubStats.add("inv.b.unsettled")
			continue
		}
		want := m.served(rec.ring)
		o := objects[name]
		if !present[name] || !bytes.Equal(o.body, want) {
			if _, lost := mp.lost[name]; lost {
				m.t.Fatalf("at %d, publisher %s's copy lost at %d out of band was not written again by a pass %ds later", now, name, mp.lost[name], now-mp.lost[name])
			}
			if os.Getenv("MODEL_DEBUG") != "" {
				st := m.a.b.pub.states[name]
				fmt.Printf("now %d upSince %d state %+v\nlogs %s\n", now, mp.upSince[name], st, m.a.logs.String())
			}
			rep, _ := m.pubRead("verifiers").Data["publishers"].(map[string]any)
			m.t.Fatalf("at %d, after a pass with the store up, publisher %s's copy (ring %q) is\n%s\nbut the plugin serves\n%s\nreport: %v", now, name, rec.ring, o.body, want, rep[name])
		}
		modelPubStats.add("inv.b.copy-is-served")
		m.checkCopyProfile(name, rec, o.body)
		var removal int64 = forever
		revokedSeen := false
		kids, _ := jwksKidsOf(o.body)
		for _, r := range rings {
			for _, k := range r.keys {
				if !slices.Contains(kids, k.kid) {
					continue
				}
				if k.revoked != 0 {
					revokedSeen = true
				}
				if k.remove > now {
					removal = min(removal, k.remove)
				}
			}
			for kid, exp := range r.trusted {
				if slices.Contains(kids, kid) && exp > now {
					removal = min(removal, exp)
				}
			}
		}
		if revokedSeen {
			m.t.Fatalf("after a pass, publisher %s's copy holds a revoked kid: %v", name, kids)
		}
		var age int64
		if _, err := fmt.Sscanf(o.cacheControl, "public, max-age=%d", &age); err != nil || o.cacheControl != fmt.Sprintf("public, max-age=%d", age) {
			m.t.Fatalf("publisher %s's copy has Cache-Control %q", name, o.cacheControl)
		}
		if age > maxAge || age < 0 {
			m.t.Fatalf("publisher %s's copy has max-age %d, outside 0..jwks_max_age %d", name, age, maxAge)
		}
		if now+age > removal {
			m.t.Fatalf("at %d, publisher %s's copy has max-age %d: a cache keeps it %ds past %d, the removal of a kid it holds", now, name, age, now+age-removal, removal)
		}
		if removal != forever {
			modelPubStats.add("inv.d.bounded-by-removal")
		} else {
			modelPubStats.add("inv.d.no-removal")
		}
	}
}

// recordChances remembers, after a pass, each ring's next activation and
// whether a required copy lacked its key: the gate had its chance.
// (Invariant a, checked here at once: a key due within the horizon whose
// required copy lacks it must have been held, unless at its cap.)
func (m *model) recordChances(rings map[string]*pubRing, copies map[string][]string, now int64) {
	mp := m.pub
	for _, name := range modelRings {
		delete(mp.chance, name)
		r := rings[name]
		if r == nil {
			continue
		}
		active := false
		var pending *pubKey
		for i := range r.keys {
			if r.keys[i].state == "active" {
				active = true
			}
			if r.keys[i].state == "pending" && pending == nil {
				pending = &r.keys[i]
			}
		}
		if !active || pending == nil {
			continue
		}
		c := gateChance{t: now, at: pending.activate, kid: pending.kid, delay: r.delay}
		for pn, rec := range mp.pubs {
			if rec.required && rec.covers(name) {
				c.required = true
				if _, lost := mp.lost[pn]; !lost && !slices.Contains(copies[pn], pending.kid) {
					c.missing = true
				}
			}
		}
		mp.chance[name] = c
		if strings.HasPrefix(pending.note, "activation delayed") {
			modelPubStats.add("inv.a.pending-held-by-gate")
		}
		if c.required && c.delay > 0 && c.missing && c.at-now <= modelGateHorizon {
			if !atCap(pending.note, r.delay) {
				m.t.Fatalf("at %d, after a pass, ring %s's pending %s activates at %d, within %ds, though a required copy lacks it; not held (gate note %q, max_activation_delay %d)",
					now, name, pending.kid, pending.activate, modelGateHorizon, pending.note, r.delay)
			}
			modelPubStats.add("inv.a.due-at-cap")
		} else if c.required && c.delay > 0 && c.missing {
			modelPubStats.add("inv.a.missing-outside-horizon")
		}
	}
}

// checkActivations (invariant a): a key of a ring covered by a required
// publisher, with max_activation_delay above 0, that started signing since
// the previous check by its schedule did so while every required copy held
// it, or at its cap, or when no pass had given the gate its chance.
func (m *model) checkActivations(rings map[string]*pubRing, now int64) {
	mp := m.pub
	for _, name := range modelRings {
		r := rings[name]
		if r == nil {
			continue
		}
		var k *pubKey
		for i := range r.keys {
			if r.keys[i].state == "active" {
				k = &r.keys[i]
			}
		}
		prev := mp.prevActive[name]
		if k == nil || k.kid == prev {
			continue
		}
		var required []string
		for pn, rec := range mp.pubs {
			if rec.required && rec.covers(name) {
				required = append(required, pn)
			}
		}
		slices.Sort(required)
		kind := ""
		switch {
		case prev == "":
			kind = "first"
		case k.activate <= mp.prevNow || k.activate > now:
			switch {
			case k.forced:
				kind = "forced"
			case !slices.ContainsFunc(r.keys, func(x pubKey) bool { return x.kid == prev && x.revoked == 0 }):
				kind = "promoted-by-revoke"
			default:
				kind = "by-operation"
			}
		case r.delay <= 0 || len(required) == 0:
			kind = "ungated"
		default:
			held, lost := true, false
			for _, pn := range required {
				if _, ok := mp.lost[pn]; ok {
					lost = true
				}
				if !slices.Contains(mp.prevCopies[pn], k.kid) {
					held = false
				}
			}
			c, ok := mp.chance[name]
			switch {
			case held:
				kind = "held"
			case lost:
				kind = "copy-lost"
			case atCap(k.note, r.delay):
				kind = "cap"
			case ok && c.kid == k.kid && c.at == k.activate && c.at-c.t <= modelGateHorizon && c.missing && c.delay > 0:
				m.t.Fatalf("at %d, ring %s's %s started signing at %d though required publishers %v lacked it, below its cap (gate note %q), and a pass at %d gave the gate its chance",
					now, name, k.kid, k.activate, required, k.note, c.t)
			default:
				kind = "no-chance"
			}
		}
		modelPubStats.add("inv.a." + kind)
	}
}

// checkPubReport (invariant c): the verifier report never calls a copy
// current while its bytes lack a served kid or hold one no longer served,
// and the publisher metrics say what the report says.
//
// After a pass, a copy that differs from the served document at a store
// that fails (or hangs) was due, so an attempt failed: the report shows
// failures and a reason.
func (m *model) checkPubReport(rings map[string]*pubRing, copies map[string][]string, passed bool, now int64) {
	mp := m.pub
	if len(mp.pubs) == 0 {
		return
	}
	rep, _ := m.pubRead("verifiers").Data["publishers"].(map[string]any)
	metrics := m.pubRead("metrics").Data
	series := func(name string, labels ...string) (float64, bool) {
		all, _ := metrics[name].([]map[string]any)
		for _, s := range all {
			l := s["labels"].(map[string]string)
			if !slices.ContainsFunc(labels, func(lv string) bool { k, v, _ := strings.Cut(lv, "="); return l[k] != v }) {
				return s["value"].(float64), true
			}
		}
		return 0, false
	}
	for name := range mp.pubs {
		e, ok := rep[name].(map[string]any)
		if !ok {
			m.t.Fatalf("publisher %s is not in the verifier report", name)
		}
		served, _ := jwksKidsOf(m.served(mp.pubs[name].ring))
		state := e["state"].(string)
		same := slices.Equal(served, copies[name])
		if _, lost := mp.lost[name]; lost && !same {
			modelPubStats.add("inv.c.lost-exempt")
		} else if !same {
			if state == "current" {
				m.t.Fatalf("at %d, the verifier report calls publisher %s current, but its copy holds %v and the plugin serves %v", now, name, copies[name], served)
			}
			modelPubStats.add("inv.c.differs-" + state)
		} else {
			modelPubStats.add("inv.c.same-" + state)
		}
		if st := mp.store(name); passed && !same && (st.fault != "" || st.hang) {
			if _, lost := mp.lost[name]; !lost {
				if f, _ := e["failures"].(int64); f == 0 || e["last_error_reason"] == "" {
					m.t.Fatalf("at %d, after a pass, publisher %s's store fails (%q, hanging %v) and its copy differs from the served document, but the report shows no failure: %v", now, name, st.fault, st.hang, e)
				}
				modelPubStats.add("inv.c.failure-reported")
			}
		}
		behind, _ := e["behind_seconds"].(int64)
		unserved, _ := e["unserved_kids"].([]string)
		revoked, _ := e["revoked_kids"].([]string)
		if mb, ok := series("jwt_rotor_publisher_seconds_behind", "publisher="+name); !ok || int64(mb) != behind {
			m.t.Fatalf("publisher %s: jwt_rotor_publisher_seconds_behind %v (found %v), the report says behind_seconds %d", name, mb, ok, behind)
		}
		mt, _ := series("jwt_rotor_publisher_unserved_kids", "publisher="+name, "revoked=true")
		mf, _ := series("jwt_rotor_publisher_unserved_kids", "publisher="+name, "revoked=false")
		if int(mt) != len(revoked) || int(mf) != len(unserved)-len(revoked) {
			m.t.Fatalf("publisher %s: unserved_kids metrics %v revoked and %v not, the report says %v of which %v revoked", name, mt, mf, unserved, revoked)
		}
	}
}

// checkPubCredentials (invariant e): no credential in a log line, a stored
// publisher state, or a copy. (Answers are checked as they come, in
// checkNoCredentials.)
func (m *model) checkPubCredentials() {
	mp := m.pub
	for _, n := range []*modelNode{m.a, m.b} {
		from := mp.logsSeen[n.logs]
		logs := n.logs.Bytes()[from:]
		mp.logsSeen[n.logs] = n.logs.Len()
		if c := credentialIn(logs); c != "" {
			m.t.Fatalf("%s logged a publisher credential (%s)", n.name, c)
		}
	}
	for k, v := range m.dump() {
		if strings.HasPrefix(k, publisherStatePrefix) {
			if c := credentialIn([]byte(v)); c != "" {
				m.t.Fatalf("%s holds a publisher credential (%s)", k, c)
			}
		}
	}
	for name, st := range mp.stores {
		st.mu.Lock()
		for on, o := range st.objects {
			if c := credentialIn(o.body); c != "" {
				m.t.Fatalf("store %s object %s holds a credential (%s)", name, on, c)
			}
		}
		st.mu.Unlock()
	}
}

func credentialIn(b []byte) string {
	for _, name := range modelPubNames {
		for _, v := range modelCreds(name) {
			if bytes.Contains(b, []byte(v)) {
				return v
			}
		}
	}
	return ""
}

// checkNoCredentials: no answer or error carries a publisher credential.
func (m *model) checkNoCredentials(path string, resp *logical.Response, err error) {
	if m.pub == nil {
		return
	}
	var b []byte
	if resp != nil {
		b, _ = json.Marshal(resp.Data)
		if raw, ok := resp.Data[logical.HTTPRawBody].([]byte); ok {
			b = append(b, raw...)
		}
		b = append(b, strings.Join(resp.Warnings, "\n")...)
	}
	if err != nil {
		b = append(b, err.Error()...)
	}
	if c := credentialIn(b); c != "" {
		m.t.Fatalf("%s answered a publisher credential (%s)", path, c)
	}
	modelPubStats.add("inv.e.answers")
}

// checkCopyProfile (invariant f): a copy never holds a key its publisher's
// profile cannot carry.
func (m *model) checkCopyProfile(name string, rec *pubRecord, body []byte) {
	if rec.profile == "" || rec.profile == "generic" {
		return
	}
	var doc struct {
		Keys []struct {
			KID string `json:"kid"`
			Alg string `json:"alg"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		m.t.Fatalf("publisher %s's copy does not parse: %v", name, err)
	}
	for _, k := range doc.Keys {
		if !profileTakes(rec.profile, k.Alg) {
			m.t.Fatalf("publisher %s (profile=%s) has a copy with %s key %s, which its verifiers do not take", name, rec.profile, k.Alg, k.KID)
		}
	}
	modelPubStats.add("inv.f.profile-" + rec.profile)
}
