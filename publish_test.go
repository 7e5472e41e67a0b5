package jwtrotor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// memStore is an in-memory object store standing in for S3 or WebDAV in
// unit and model tests: conditional writes by ETag, reads through the
// store's API and through a public URL, and the faults a real store shows
// (down, denying, failing, hanging, losing objects). The acceptance tests
// run the real stores.
type memStore struct {
	mu      sync.Mutex
	objects map[string]memObject
	seq     int
	// fault, when set, is the reason every call fails with; hang makes
	// every call wait for its context.
	fault string
	hang  bool
	puts  int
	// slow, when set, is how long every call takes without reading its
	// context: a store that answers after the attempt's deadline.
	slow time.Duration
	// base is the public URL the objects under publicPrefix are read under.
	base, publicPrefix string
}

type memObject struct {
	body         []byte
	etag         string
	cacheControl string
}

func newMemStore(base string) *memStore {
	return &memStore{objects: map[string]memObject{}, base: base}
}

func (m *memStore) failing(op, name string) error {
	if m.fault != "" {
		return &sinkError{Op: op, Object: name, Reason: m.fault}
	}
	return nil
}

func (m *memStore) wait(ctx context.Context, op, name string) error {
	m.mu.Lock()
	hang, slow := m.hang, m.slow
	m.mu.Unlock()
	time.Sleep(slow)
	if hang {
		<-ctx.Done()
		return &sinkError{Op: op, Object: name, Reason: reasonTimeout}
	}
	return nil
}

func (m *memStore) put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (string, error) {
	if err := m.wait(ctx, "put", name); err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failing("put", name); err != nil {
		return "", err
	}
	cur, ok := m.objects[name]
	if (ifMatch == "" && ok) || (ifMatch != "" && (!ok || cur.etag != ifMatch)) {
		return "", &sinkError{Op: "put", Object: name, Reason: reasonPrecondition, Status: 412}
	}
	m.seq++
	m.puts++
	etag := fmt.Sprintf("%q", strconv.Itoa(m.seq))
	m.objects[name] = memObject{body: slices.Clone(body), etag: etag, cacheControl: cacheControl}
	return etag, nil
}

func (m *memStore) get(ctx context.Context, name string) ([]byte, string, error) {
	if err := m.wait(ctx, "get", name); err != nil {
		return nil, "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failing("get", name); err != nil {
		return nil, "", err
	}
	o, ok := m.objects[name]
	if !ok {
		return nil, "", &sinkError{Op: "get", Object: name, Reason: reasonMissing, Status: 404}
	}
	return slices.Clone(o.body), o.etag, nil
}

// readPublic answers a public URL under base from the store.
func (m *memStore) readPublic(ctx context.Context, url string) ([]byte, string, error) {
	name, ok := strings.CutPrefix(url, m.base)
	if !ok {
		return nil, "", &sinkError{Op: "read_public", Object: url, Reason: reasonUnreachable}
	}
	body, etag, err := m.get(ctx, m.publicPrefix+name)
	if se, ok := err.(*sinkError); ok {
		se.Op = "read_public"
	}
	return body, etag, err
}

func (m *memStore) object(name string) (memObject, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	o, ok := m.objects[name]
	return o, ok
}

func (m *memStore) set(fault string, hang bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fault, m.hang = fault, hang
}

func (m *memStore) remove(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.objects, name)
}

const testPublicBase = "https://vault.example.com/v1/jwt/"

// withStores makes every publisher of e write to its own memStore, by
// publisher type and URL or bucket, read publicly under testPublicBase.
func withStores(e *testEnv) map[string]*memStore {
	stores := map[string]*memStore{}
	var mu sync.Mutex
	storeOf := func(p *publisherEntry) *memStore {
		mu.Lock()
		defer mu.Unlock()
		key := p.Bucket + p.URL
		if stores[key] == nil {
			stores[key] = newMemStore(testPublicBase)
			stores[key].publicPrefix = p.Prefix
		}
		return stores[key]
	}
	e.b.newSink = func(p *publisherEntry, _ bool) (sink, error) { return storeOf(p), nil }
	e.b.readPublic = func(ctx context.Context, url string) ([]byte, string, error) {
		mu.Lock()
		var match []*memStore
		for _, s := range stores {
			match = append(match, s)
		}
		mu.Unlock()
		if len(match) != 1 {
			return nil, "", &sinkError{Op: "read_public", Object: url, Reason: reasonUnreachable}
		}
		return match[0].readPublic(ctx, url)
	}
	return stores
}

func (e *testEnv) publishPass() {
	e.t.Helper()
	e.b.publishPass(context.Background(), e.storage, true)
}

// uploadFrom runs one upload of publisher name as snap plans it at now,
// cut off after timeout, and returns the copy it planned.
func (e *testEnv) uploadFrom(snap *snapshot, name string, now int64, timeout time.Duration) *plannedCopy {
	e.t.Helper()
	p := snap.publishers[name]
	pc, err := e.b.plan(snap, p, now)
	if err != nil {
		e.t.Fatal(err)
	}
	states, _ := e.b.publisherStates(context.Background(), e.storage)
	saved := e.b.pub.attemptTimeout
	e.b.pub.attemptTimeout = timeout
	defer func() { e.b.pub.attemptTimeout = saved }()
	e.b.upload(context.Background(), e.storage, snap, name, p, pc, states[name], now)
	return pc
}

func (e *testEnv) publisherReport(name string) map[string]any {
	e.t.Helper()
	pubs := e.read("verifiers").Data["publishers"].(map[string]any)
	r, ok := pubs[name].(map[string]any)
	if !ok {
		e.t.Fatalf("publisher %s is not in the verifier report: %v", name, pubs)
	}
	return r
}

// metricSeries is the value of the series of name whose labels include
// every label=value given (-1 when there is none).
func metricSeries(e *testEnv, name string, labels ...string) float64 {
	series, _ := e.read("metrics").Data[name].([]map[string]any)
	for _, s := range series {
		l := s["labels"].(map[string]string)
		if !slices.ContainsFunc(labels, func(lv string) bool { k, v, _ := strings.Cut(lv, "="); return l[k] != v }) {
			return s["value"].(float64)
		}
	}
	return -1
}

var maxAgeRE = regexp.MustCompile(`^public, max-age=(\d+)$`)

// The copy is what the plugin serves: the JWKS byte for byte at
// <prefix><jwks_path>, and, because public_url is the issuer plus "/", the
// discovery document naming the issuer and the copy's own jwks_uri; both
// with a max-age within jwks_max_age. The report lists the copy's kids.
func TestPublishCopyIsTheServedDocument(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	stores := withStores(e)
	e.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/", "prefix": "p/", "public_url": testPublicBase}))
	e.mustWrite("config", map[string]any{"issuer": strings.TrimSuffix(testPublicBase, "/")})
	e.publishPass()
	st := stores["https://dav.example.com/"]
	_, served, _ := e.jwks("jwks")
	copyJWKS, ok := st.object("p/.well-known/jwks.json")
	if !ok || string(copyJWKS.body) != string(served) {
		t.Fatalf("the JWKS copy is\n%s\nand the plugin serves\n%s", copyJWKS.body, served)
	}
	m := maxAgeRE.FindStringSubmatch(copyJWKS.cacheControl)
	if m == nil {
		t.Fatalf("Cache-Control %q", copyJWKS.cacheControl)
	}
	if n, _ := strconv.Atoi(m[1]); n < 1 || n > 60 {
		t.Fatalf("max-age %d, want 1..jwks_max_age (60)", n)
	}
	disc, ok := st.object("p/" + discoveryObject)
	if !ok {
		t.Fatal("no discovery document, though public_url is the issuer plus /")
	}
	var d discoveryBody
	if err := json.Unmarshal(disc.body, &d); err != nil {
		t.Fatal(err)
	}
	if d.Issuer != strings.TrimSuffix(testPublicBase, "/") || d.JWKSURI != testPublicBase+".well-known/jwks.json" {
		t.Fatalf("discovery names issuer %q and jwks_uri %q", d.Issuer, d.JWKSURI)
	}
	rep := e.publisherReport("site")
	if rep["state"] != "current" || fmt.Sprint(rep["kids"]) != fmt.Sprint(e.jwksKIDs()) || rep["acknowledged_via"] != "public_url" {
		t.Fatalf("report %v; served kids %v", rep, e.jwksKIDs())
	}
	// A publisher whose public_url is not the issuer's writes the JWKS
	// alone.
	e.mustWrite("publishers/other", davPublisher(map[string]any{"url": "https://other.example.com/", "public_url": "https://other.example.com/"}))
	e.publishPass()
	if _, ok := stores["https://other.example.com/"].object(discoveryObject); ok {
		t.Fatal("a publisher whose public_url is not the issuer wrote a discovery document")
	}
}

// A change of the published set reaches the copy at the next pass; an
// unchanged set is not written again before its re-assertion is due.
func TestPublishFollowsRevocation(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	puts := st.puts
	e.clock.Advance(time.Second)
	e.publishPass()
	if st.puts != puts {
		t.Fatalf("an unchanged copy was written again after 1s (%d puts, then %d)", puts, st.puts)
	}
	pending := e.ring("k").Keys[1].KID
	e.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	e.publishPass()
	o, _ := st.object(".well-known/jwks.json")
	kids, _ := jwksKIDs(o.body)
	if slices.Contains(kids, pending) {
		t.Fatalf("revoked kid %s still in the copy after a pass: %v", pending, kids)
	}
}

// A store that fails is retried, shown as failing with its reason in the
// report and the failure metric, and recovers by itself; a hanging store
// costs a pass no more than the attempt timeout.
func TestPublishRetriesUntilTheStoreAnswers(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	st.set(reasonServer, false)
	pending := e.ring("k").Keys[1].KID
	e.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	e.publishPass()
	rep := e.publisherReport("site")
	if rep["state"] != "behind" || rep["last_error_reason"] != reasonServer || rep["failures"] != int64(1) {
		t.Fatalf("after a failed upload the report says %v", rep)
	}
	if !slices.Contains(rep["revoked_kids"].([]string), pending) {
		t.Fatalf("the copy still holds revoked %s, and the report's revoked_kids is %v", pending, rep["revoked_kids"])
	}
	if f, u := metricSeries(e, "jwt_rotor_publisher_failures_total", "publisher=site", "reason=server"), metricSeries(e, "jwt_rotor_publisher_unserved_kids", "publisher=site", "revoked=true"); f != 1 || u != 1 {
		t.Fatalf("metrics: %v failures for reason server, %v revoked kids in the copy; want 1 and 1", f, u)
	}
	st.set("", false)
	e.publishPass() // within the retry wait: not tried
	if got := e.publisherReport("site")["failures"]; got != int64(1) {
		t.Fatalf("tried again before its retry wait: failures %v", got)
	}
	e.clock.Advance(time.Duration(publishRetryMaxSeconds) * time.Second)
	e.publishPass()
	if rep := e.publisherReport("site"); rep["state"] != "current" || rep["failures"] != int64(0) || len(rep["revoked_kids"].([]string)) != 0 {
		t.Fatalf("after the store came back the report says %v", rep)
	}
}

// An attempt cut off by its deadline (a store that hangs) is still
// recorded: the report shows the timeout and the failure, and the retry
// waits its backoff. Storing the outcome under the attempt's own expired
// context lost it, so a hanging store never showed and was tried at every
// pass.
func TestPublishRecordsAnAttemptCutOffByItsDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	stores := withStores(e)
	e.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/"}))
	e.publishPass()
	stores["https://dav.example.com/"].set("", true)
	pending := e.ring("k").Keys[1].KID
	e.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	snap, err := e.b.load(context.Background(), e.storage)
	if err != nil {
		t.Fatal(err)
	}
	now := e.b.now()
	pc := e.uploadFrom(snap, "site", now, 50*time.Millisecond)
	rep := e.publisherReport("site")
	if rep["last_error_reason"] != reasonTimeout || rep["failures"] != int64(1) || rep["state"] != "behind" {
		t.Fatalf("after an attempt cut off by its deadline the report says %v; want reason timeout, 1 failure, behind", rep)
	}
	states, _ := e.b.publisherStates(context.Background(), e.storage)
	if pc.due(states["site"], snap.publishers["site"], now) {
		t.Fatalf("a timed-out upload is due again at once, before its retry wait")
	}
}

// An object deleted out of band is written again when the copy is next
// re-asserted, and counted.
func TestPublishRestoresADeletedCopy(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	st.remove(".well-known/jwks.json")
	e.clock.Advance(time.Duration(reassertSeconds) * time.Second)
	e.publishPass()
	if _, ok := st.object(".well-known/jwks.json"); !ok {
		t.Fatal("a deleted copy was not restored at its re-assertion")
	}
	if rep := e.publisherReport("site"); rep["restored"] != int64(1) || rep["state"] != "current" {
		t.Fatalf("report after the restore: %v", rep)
	}
}

// A store that answers after the attempt's deadline has passed does not
// make the node look unable to write storage: the copy deleted out of band
// is written over (the fence stored under the pass's own context) and
// acknowledged.
func TestPublishSlowStoreDoesNotFenceOffTheNode(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	st.remove(".well-known/jwks.json")
	st.mu.Lock()
	st.slow = 20 * time.Millisecond
	st.mu.Unlock()
	e.b.pub.attemptTimeout = 5 * time.Millisecond
	e.clock.Advance(time.Duration(reassertSeconds) * time.Second)
	e.publishPass()
	if _, ok := st.object(".well-known/jwks.json"); !ok {
		t.Fatalf("the deleted copy was not written again; report %v", e.publisherReport("site"))
	}
	if rep := e.publisherReport("site"); rep["restored"] != int64(1) {
		t.Fatalf("report after the restore: %v", rep)
	}
}

// twoPublishingNodes is two nodes on one storage, a ring, and a publisher
// whose copy the first node has written.
func twoPublishingNodes(t *testing.T) (old, cur *testEnv, stores map[string]*memStore) {
	old, cur = twoNodes(t)
	old.setupRing("k", "ES256", nil)
	stores = withStores(old)
	old.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/"}))
	old.publishPass()
	return old, cur, stores
}

// A node whose view is older than storage's cannot write back an older
// copy: its conditional write fails on the ETag the newer node recorded,
// and the object stays the newer node's.
func TestPublishStaleNodeCannotWriteBack(t *testing.T) {
	t.Parallel()
	old, cur, stores := twoPublishingNodes(t)
	cur.b.newSink, cur.b.readPublic = old.b.newSink, old.b.readPublic
	// The old node's view: its cache holds the ring before the revoke.
	staleSnap, err := old.b.load(context.Background(), old.storage)
	if err != nil {
		t.Fatal(err)
	}
	pending := cur.ring("k").Keys[1].KID
	cur.mustWrite("keys/k/revoke", map[string]any{"kid": pending})
	cur.publishPass()
	st := stores["https://dav.example.com/"]
	want, _ := st.object(".well-known/jwks.json")
	pc := old.uploadFrom(staleSnap, "site", old.b.now(), publishAttemptTimeout)
	if !slices.Contains(pc.kids, pending) {
		t.Fatalf("the stale view should still hold %s: %v", pending, pc.kids)
	}
	got, _ := st.object(".well-known/jwks.json")
	if string(got.body) != string(want.body) {
		t.Fatalf("the stale node wrote back its copy:\n%s\nover\n%s", got.body, want.body)
	}
}

// deposedStorage is the storage a node that lost leadership still sees:
// its own copy, frozen when it was cut off, which it can read but not
// write (a Raft follower's local store).
type deposedStorage struct{ logical.Storage }

func (deposedStorage) Put(context.Context, *logical.StorageEntry) error {
	return errors.New("node is not the leader")
}

func (deposedStorage) Delete(context.Context, string) error {
	return errors.New("node is not the leader")
}

// frozenCopy copies every entry of s.
func frozenCopy(t *testing.T, s logical.Storage) deposedStorage {
	t.Helper()
	ctx := context.Background()
	keys, err := logical.CollectKeys(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	c := &logical.InmemStorage{}
	for _, k := range keys {
		e, err := s.Get(ctx, k)
		if err != nil || e == nil {
			t.Fatalf("copy %s: %v", k, err)
		}
		if err := c.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	return deposedStorage{c}
}

// A node that lost leadership while it had a change to publish, and runs
// a pass before it learns so, reads its own older copy of storage: its
// conditional write fails on the newer node's ETag, and storage (its
// copy) records no newer state. It must not then write its older copy,
// which still holds a revoked kid, over the newer node's as if the object
// had been changed outside the plugin: it cannot write storage, and so
// writes nothing to the store either.
func TestPublishDeposedNodeCannotWriteBack(t *testing.T) {
	t.Parallel()
	old, cur, stores := twoPublishingNodes(t)
	// A change the old node has yet to publish when it is cut off.
	old.mustWrite("keys/k/rotate", map[string]any{"force": true})
	cutOff := frozenCopy(t, old.storage)
	cur.b.newSink, cur.b.readPublic = old.b.newSink, old.b.readPublic
	revoked, _ := cur.mustWrite("keys/k/rotate", map[string]any{"revoke_active": true}).Data["previous_kid"].(string)
	cur.publishPass()
	st := stores["https://dav.example.com/"]
	want, _ := st.object(".well-known/jwks.json")
	if slices.Contains(kidsOf(t, want.body), revoked) {
		t.Fatalf("the new node's copy holds the revoked kid %s", revoked)
	}
	old.b.publishPass(context.Background(), cutOff, true)
	got, _ := st.object(".well-known/jwks.json")
	if string(got.body) != string(want.body) {
		t.Fatalf("the node that lost leadership wrote its copy (revoked kid %s in it: %v):\n%s\nover the new node's\n%s",
			revoked, slices.Contains(kidsOf(t, got.body), revoked), got.body, want.body)
	}
	// The new node's next pass finds its own copy untouched.
	cur.clock.Advance(2 * time.Second)
	cur.publishPass()
	if r := cur.publisherReport("site"); r["restored"] != int64(0) || r["state"] != "current" {
		t.Errorf("the new node's report after the old node's pass: %v", r)
	}
}

// The publisher gate: a pending key whose activation is near does not
// activate while a required publisher's acknowledged copy lacks it; it is
// held (and its gate_note names the publisher) at most max_activation_delay
// past its scheduled time, and released as soon as the copy holds it. A
// publisher that is not required holds nothing.
func TestPublishGateHoldsActivationUntilTheCopyHoldsTheKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"max_activation_delay": "30m"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	stores := withStores(e)
	e.mustWrite("publishers/loose", davPublisher(map[string]any{"url": "https://loose.example.com/"}))
	e.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/", "required": true}))
	e.publishPass()
	st := stores["https://dav.example.com/"]
	pending := func() signingKey {
		r := e.ring("k")
		_, p := activeAndPending(r.Keys, e.b.now())
		if p < 0 {
			t.Fatalf("no pending key at %d", e.b.now())
		}
		return r.Keys[p]
	}
	// Runs passes (and maintenance every minute) until 2s before the
	// pending key's activation.
	upTo := func(kid string) {
		for {
			k := pending()
			if k.KID != kid || k.ActivateAt-e.b.now() <= 2 || k.GateOrigin != 0 {
				return
			}
			e.clock.Advance(time.Duration(min(60, k.ActivateAt-e.b.now()-2)) * time.Second)
			if err := e.maintain(); err != nil {
				t.Fatal(err)
			}
			e.publishPass()
		}
	}
	// The copy acknowledged before the outage holds the pending key
	// (published for publish_lead already): nothing is held.
	stores["https://loose.example.com/"].set(reasonUnreachable, false)
	st.set(reasonUnreachable, false)
	first := pending()
	upTo(first.KID)
	if got := pending(); got.KID != first.KID || got.ActivateAt != first.ActivateAt || got.GateNote != "" {
		t.Fatalf("a key the acknowledged copy holds was held: %+v (scheduled %d)", got, first.ActivateAt)
	}
	e.clock.Advance(3 * time.Second)
	e.publishPass()
	// The next key was published while the store was down: held when
	// near, by the required publisher alone.
	next := pending()
	upTo(next.KID)
	held := pending()
	if held.KID != next.KID || held.ActivateAt != e.b.now()+publisherHoldStepSeconds || held.GateOrigin != next.ActivateAt ||
		!strings.Contains(held.GateNote, "required publishers site") || strings.Contains(held.GateNote, "loose") {
		t.Fatalf("2s before the activation of a key no acknowledged copy holds: %+v (now %d, scheduled %d)", held, e.b.now(), next.ActivateAt)
	}
	if e.signKID() != first.KID {
		t.Fatal("signing moved off the active key while its successor was held")
	}
	// Held no longer than the cap, however long the store is down.
	capAt := next.ActivateAt + 30*60
	for e.b.now() < capAt+5 {
		e.clock.Advance(10 * time.Second)
		e.publishPass()
	}
	if e.signKID() != next.KID {
		t.Fatalf("past the cap (%d, now %d), signing with %s, not the held %s", capAt, e.b.now(), e.signKID(), next.KID)
	}
	for _, k := range e.ring("k").Keys {
		if k.KID == next.KID && k.ActivateAt != capAt {
			t.Fatalf("held key activated at %d, cap %d", k.ActivateAt, capAt)
		}
	}
	// Released at once when the copy holds it: the key after it.
	third := pending()
	upTo(third.KID)
	if got := pending(); got.KID != third.KID || got.GateOrigin == 0 {
		t.Fatalf("the third key was not held: %+v", got)
	}
	st.set("", false)
	e.clock.Advance(time.Duration(publishRetryMaxSeconds) * time.Second)
	e.publishPass()
	got := pending()
	if got.KID != third.KID || got.ActivateAt != max(got.GateOrigin, e.b.now()+1) || !strings.Contains(got.GateNote, "once the copies of publishers site held it") {
		t.Fatalf("released key: %+v (now %d)", got, e.b.now())
	}
}

// A publisher changed to write another scope to the same object takes the
// object over at the next pass: the stored state of its earlier
// destination is this mount's own, not a newer node's, so the first
// upload after the change neither fails on the precondition nor waits for
// a retry.
func TestPublishChangedPublisherTakesOverItsOwnObject(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	e.mustWrite("publishers/site", map[string]any{"ring": "k"})
	e.publishPass()
	if rep := e.publisherReport("site"); rep["state"] != "current" || rep["failures"] != int64(0) {
		t.Fatalf("after the change the report says %v", rep)
	}
	copyIsServed(t, e, st, "jwks/k")
}

// The copy's max-age follows jwks_max_age and the next removal even when
// the key set, and so the copy's body, stays the same: a lower
// jwks_max_age is written at the next pass, not at the re-assertion.
func TestPublishMaxAgeFollowsALowerLimit(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	e.mustWrite("config", map[string]any{"jwks_max_age": 5})
	e.clock.Advance(time.Second)
	e.publishPass()
	o, _ := st.object(".well-known/jwks.json")
	n := -1
	if m := maxAgeRE.FindStringSubmatch(o.cacheControl); m != nil {
		n, _ = strconv.Atoi(m[1])
	}
	if n < 0 || n > 5 {
		t.Fatalf("after jwks_max_age=5 and a pass the copy has Cache-Control %q", o.cacheControl)
	}
}

// stateFailStorage fails the writes of publisher states that fail says to.
type stateFailStorage struct {
	logical.InmemStorage
	fail func() bool
}

func (s *stateFailStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if s.fail != nil && strings.HasPrefix(e.Key, publisherStatePrefix) && s.fail() {
		return errInjected
	}
	return s.InmemStorage.Put(ctx, e)
}

// A copy written whose outcome was never stored (a crash, or a failed
// state write, between the put and the state) is not taken for the copy
// acknowledged before: the report does not call it current, and the next
// pass writes it again, so a kid that left the key set since is not left
// in it.
func TestPublishCopyWrittenButNotRecordedIsWrittenAgain(t *testing.T) {
	t.Parallel()
	e, st, _ := outcomeLost(t, nil)
	notCurrentThenWrittenAgain(t, e, st)
}

// The same when the copy was deleted out of band first, so that the pass
// stored its state to fence off a deposed node before writing over it:
// that state keeps the copy marked in flight, for the process that
// starts after the crash.
func TestPublishFencedOverwriteNotRecordedIsWrittenAgain(t *testing.T) {
	t.Parallel()
	e, st, before := outcomeLost(t, func(st *memStore) { st.remove(".well-known/jwks.json") })
	if st.puts != before+1 {
		t.Fatalf("%d puts, want the one after the fence", st.puts-before)
	}
	// A new process knows only what storage holds.
	old := e
	e = e.restart()
	e.b.newSink, e.b.readPublic = old.b.newSink, old.b.readPublic
	notCurrentThenWrittenAgain(t, e, st)
}

// A failed upload is retried by the wall clock: while the schedule stands
// still (held after a clock step, or at its high-water mark after a
// correction back), a retry that waited for it would never come, and a
// revoked key would stay in the copy.
func TestPublishRetryWaitsByTheWallClock(t *testing.T) {
	t.Parallel()
	p := &publisherEntry{Type: publisherWebDAV}
	st := &publisherState{Destination: p.destination(), Failures: 2, LastAttemptAt: 890, LastAttemptWall: 1000}
	for _, c := range []struct {
		now, wall int64
		due       bool
	}{
		{890, 1001, false}, // 1 s of the 2 s backoff
		{890, 1002, true},  // the schedule held, the wall clock 2 s on
		{890, 999, true},   // the wall clock stepped back: no waiting for it
		{900, 1001, false},
	} {
		pc := &plannedCopy{wall: c.wall}
		if got := pc.due(st, p, c.now); got != c.due {
			t.Errorf("schedule %d, wall %d: due %v, want %v", c.now, c.wall, got, c.due)
		}
	}
}

// notCurrentThenWrittenAgain drops ring k, whose keys the lost upload
// wrote, and checks that the report does not call that copy current and
// that the next pass writes the copy that is served.
func notCurrentThenWrittenAgain(t *testing.T, e *testEnv, st *memStore) {
	t.Helper()
	if _, err := e.do(logical.DeleteOperation, "keys/k", map[string]any{"force": true}); err != nil {
		t.Fatal(err)
	}
	if rep := e.publisherReport("site"); rep["state"] == "current" {
		o, _ := st.object(".well-known/jwks.json")
		t.Fatalf("the copy holds %s, and the report says %v", o.body, rep)
	}
	e.publishPass()
	copyIsServed(t, e, st, "jwks")
}

// outcomeLost is a publisher whose empty copy was acknowledged, then a
// ring k created and, after meddle (if any) changed the store, a pass
// whose upload succeeded and whose outcome failed to be stored. It
// returns the store's puts before that pass.
func outcomeLost(t *testing.T, meddle func(*memStore)) (*testEnv, *memStore, int) {
	t.Helper()
	s := &stateFailStorage{}
	e := newEnvOn(t, s, &fakeClock{now: testStart})
	stores := withStores(e)
	e.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/"}))
	e.publishPass() // an empty key set, acknowledged
	e.setupRing("k", "ES256", nil)
	st := stores["https://dav.example.com/"]
	if meddle != nil {
		meddle(st)
	}
	before := st.puts
	s.fail = func() bool { return st.puts > before }
	e.publishPass() // the ring's keys written, the outcome lost
	s.fail = nil
	return e, st, before
}

// A store that hangs costs an attempt no more than its timeout, and the
// attempt is recorded as failing for that reason: the state is stored
// outside the attempt's deadline, so the retry waits as for any failure.
func TestPublishHangingStoreIsRecordedAsFailing(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	e.b.pub.attemptTimeout = 50 * time.Millisecond
	st.set("", true)
	e.mustWrite("keys/k/revoke", map[string]any{"kid": e.ring("k").Keys[1].KID})
	start := time.Now()
	e.publishPass()
	// Ended by the mount's attempt timeout (50ms), not by anything as
	// long as the default one.
	if d := time.Since(start); d >= publishAttemptTimeout {
		t.Fatalf("a pass with a hanging store took %s", d)
	}
	if rep := e.publisherReport("site"); rep["last_error_reason"] != reasonTimeout || rep["failures"] != int64(1) {
		t.Fatalf("after an attempt on a hanging store the report says %v", rep)
	}
}

// publishedSite is a ring k and a publisher site on a memStore, after a
// pass.
func publishedSite(t *testing.T) (*testEnv, *memStore) {
	t.Helper()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	stores := withStores(e)
	e.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/"}))
	e.publishPass()
	return e, stores["https://dav.example.com/"]
}

// copyIsServed fails t unless st's copy of the JWKS is byte for byte what
// path serves.
func copyIsServed(t *testing.T, e *testEnv, st *memStore, path string) {
	t.Helper()
	o, _ := st.object(".well-known/jwks.json")
	if _, served, _ := e.jwks(path); string(o.body) != string(served) {
		t.Fatalf("the copy is\n%s\nand %s serves\n%s", o.body, path, served)
	}
}

// While the acknowledged copy is written again unchanged (its
// re-assertion), the report keeps calling it current.
func TestPublishReassertionKeepsTheCopyCurrent(t *testing.T) {
	t.Parallel()
	e, st := publishedSite(t)
	var during map[string]any
	e.b.newSink = func(*publisherEntry, bool) (sink, error) {
		return reportingSink{st, func() { during = e.publisherReport("site") }}, nil
	}
	e.b.pub.forgetAll()
	e.clock.Advance(time.Duration(reassertSeconds) * time.Second)
	e.publishPass()
	if during == nil || during["state"] != "current" || during["behind_seconds"] != int64(0) {
		t.Fatalf("during a re-assertion the report said %v", during)
	}
}

// reportingSink calls put's hook before each put.
type reportingSink struct {
	*memStore
	hook func()
}

func (r reportingSink) put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (string, error) {
	r.hook()
	return r.memStore.put(ctx, name, body, cacheControl, ifMatch)
}

// A publisher whose first upload failed publishes once its store answers,
// also after a restart: its stored state, which records no object yet,
// reads back as one that upload can record objects in.
func TestPublishAfterAFailedFirstUploadAndARestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	stores := withStores(e)
	st := newMemStore(testPublicBase)
	stores["https://dav.example.com/"] = st
	st.set(reasonUnreachable, false)
	e.mustWrite("publishers/site", davPublisher(map[string]any{"url": "https://dav.example.com/"}))
	e.publishPass()
	e = e.restart()
	e.b.newSink = func(*publisherEntry, bool) (sink, error) { return st, nil }
	st.set("", false)
	e.clock.Advance(time.Duration(publishRetryMaxSeconds) * time.Second)
	e.publishPass()
	copyIsServed(t, e, st, "jwks")
	if rep := e.publisherReport("site"); rep["state"] != "current" || rep["failures"] != int64(0) {
		t.Fatalf("after the store came back the report says %v", rep)
	}
}
