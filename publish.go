package jwtrotor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Uploads: the publishers' copies kept in step with the schedule. On the
// active node a goroutine of the plugin (startPublishing) runs a pass every
// second: for each publisher it renders what the copy should hold now,
// uploads when that changed, when a failed upload is due for a retry, or
// when the copy is due to be re-asserted, reads the copy back, and stores
// what the sink acknowledged. The activation gate (maintenance.go) reads
// those acknowledgements. Nothing here runs under the write lock but the
// gate's own decisions; a sink that hangs holds up only its own publisher.

const (
	publisherStatePrefix = "publisher-state/"

	// publishTick is how often a pass runs: a change to the published set
	// reaches a reachable sink within a tick plus an upload.
	publishTick = time.Second
	// publishAttemptTimeout bounds one publisher's upload and read-back, so
	// a failed attempt is retried within publishRetryMaxSeconds plus it.
	publishAttemptTimeout = 8 * time.Second
	// publishRetryMaxSeconds is the longest wait before a failed upload is
	// tried again (the wait doubles from one second up to it).
	publishRetryMaxSeconds int64 = 8
	// reassertSeconds is how often an unchanged copy is written again, so
	// an object deleted or changed out of band is restored and max-age is
	// recomputed against the next removal.
	reassertSeconds int64 = 60
	// maxConcurrentUploads bounds the publishers uploading at once.
	maxConcurrentUploads = 4
	// publisherGateHorizonSeconds: the gate holds a key for a publisher
	// when its activation is this close; passes run every second, so the
	// decision is stored before the activation it concerns. A held key is
	// pushed publisherHoldStepSeconds at a time (at most to its cap), and
	// released as soon as the copies hold it.
	publisherGateHorizonSeconds int64 = 3
	publisherHoldStepSeconds    int64 = 30
)

// publisherState is what a publisher last did, stored so that a restart
// or failover resumes where it stopped. It holds no credential and no
// response body.
type publisherState struct {
	Version int `json:"version"`
	// Destination identifies where the objects below are (type, bucket or
	// URL, prefix, paths): a publisher changed to write elsewhere starts
	// afresh.
	Destination string `json:"destination"`
	// Objects are the ETags and content hashes of the objects last
	// written, by object name.
	Objects map[string]objectState `json:"objects,omitempty"`
	// Hash is the hash of the documents the last acknowledged copy was
	// written from; KIDs the kids the copy read back held; AckedAt and
	// AckedVia when and how (public_url or store_api) it was read back.
	Hash     string   `json:"hash,omitempty"`
	KIDs     []string `json:"kids"`
	AckedAt  int64    `json:"acked_at,omitempty"`
	AckedVia string   `json:"acked_via,omitempty"`
	// MaxAge is the max-age the acknowledged copy carries; NextReassert
	// when it is to be written again (max-age was computed against it).
	MaxAge       int64 `json:"max_age"`
	NextReassert int64 `json:"next_reassert,omitempty"`
	// Writing is the hash of a copy whose upload started and whose outcome
	// was not stored (a crash or a failed state write between them): the
	// store may hold it or the acknowledged one, so the copy is uploaded
	// again and not reported current until then.
	Writing string `json:"writing,omitempty"`
	// Failures counts attempts failed since the last success; LastError
	// (a sinkError's text) and LastReason describe the latest.
	Failures      int64  `json:"failures,omitempty"`
	LastError     string `json:"last_error,omitempty"`
	LastReason    string `json:"last_reason,omitempty"`
	LastAttemptAt int64  `json:"last_attempt_at,omitempty"`
	// LastAttemptWall is the wall clock's time of that attempt: the retry
	// waits by it, since the schedule stands still while it is held (after
	// a clock step, or a correction back) and a retry must not wait for it.
	LastAttemptWall int64 `json:"last_attempt_wall,omitempty"`
	// Restored counts objects found deleted or changed out of band and
	// written again.
	Restored int64 `json:"restored,omitempty"`
}

type objectState struct {
	ETag string `json:"etag"`
	Hash string `json:"hash"`
}

func (st *publisherState) clone() *publisherState {
	c := *st
	// A state stored before any object was written has none (omitempty),
	// and reads back without the map the upload records objects in.
	c.Objects = maps.Clone(st.Objects)
	if c.Objects == nil {
		c.Objects = map[string]objectState{}
	}
	c.KIDs = slices.Clone(st.KIDs)
	return &c
}

// holds reports whether the acknowledged copy holds kid.
func (st *publisherState) holds(kid string) bool {
	return st != nil && slices.Contains(st.KIDs, kid)
}

// publishing is the upload machinery's in-memory state.
type publishing struct {
	// mu guards the fields below; storeMu serialises the storage writes of
	// publisher states with the deletion of publishers.
	mu       sync.Mutex
	storeMu  sync.Mutex
	loaded   bool
	states   map[string]*publisherState
	inflight map[string]bool
	sinks    map[*publisherEntry]sink
	slots    chan struct{}
	uploads  sync.WaitGroup
	// attemptTimeout bounds each attempt (publishAttemptTimeout).
	attemptTimeout time.Duration
	// cancel and done stop the goroutine (stopPublishing).
	cancel context.CancelFunc
	done   chan struct{}
}

func newPublishing() *publishing {
	return &publishing{states: map[string]*publisherState{}, inflight: map[string]bool{}, sinks: map[*publisherEntry]sink{}, slots: make(chan struct{}, maxConcurrentUploads),
		attemptTimeout: publishAttemptTimeout}
}

// copyObject is one object a publisher writes.
type copyObject struct {
	name         string
	body         []byte
	cacheControl string
}

// plannedCopy is what a publisher's copy should be at one instant.
type plannedCopy struct {
	objects []copyObject
	jwks    []byte
	kids    []string
	hash    string
	maxAge  int64
	// reassertAt is when the copy is to be written again; maxAge was
	// computed so that a copy fetched just before then is stale before
	// the next removal.
	reassertAt int64
	// maxAgeLimit (jwks_max_age) and nextRemoval bound the max-age of the
	// copy already written: one that outruns either is written again.
	maxAgeLimit, nextRemoval int64
	// wall is the wall clock's time of the pass (0: not known).
	wall int64
}

// destination names where p writes, for publisherState.Destination.
func (p *publisherEntry) destination() string {
	d := fmt.Sprintf("%s|%s|%s|%s|%s|%s|%s|%s|%s", p.Type, p.Bucket, p.Region, p.Endpoint, p.URL, p.Prefix, p.JWKSPath, p.PublicURL, p.Ring)
	if p.Type == publisherAzure {
		// Appended, so the destinations of the older types read as before.
		d += "|" + p.AccountURL + "|" + p.Container
	}
	return d
}

// publishesDiscovery reports whether p also writes the discovery document:
// when its public_url is the issuer plus "/", so a verifier that takes the
// issuer from a token finds it there.
func (p *publisherEntry) publishesDiscovery(issuer string) bool {
	return issuer != "" && p.PublicURL == issuer+"/"
}

// plan renders what p's copy should hold at now: the JWKS byte for byte as
// the plugin serves it for p's scope, and the discovery document when p
// publishes it. max-age is at most jwks_max_age and at most the time from
// the next planned re-upload to the next removal; re-uploads come at least
// every reassertSeconds and, as a removal nears, at half the time left,
// so that bound stays positive until the last second.
func (b *backend) plan(snap *snapshot, p *publisherEntry, now int64) (*plannedCopy, error) {
	scope := p.Ring
	doc, err := b.document(snap, scope, now)
	if err != nil {
		return nil, err
	}
	if doc == nil {
		// The ring was deleted and drained: publish an empty set rather
		// than keys nobody serves.
		doc = &renderedJWKS{body: []byte(`{"keys":[]}`), nextRemoval: forever}
	}
	pc := &plannedCopy{jwks: doc.body, kids: slices.Clone(doc.kids), maxAge: snap.config.JWKSMaxAge,
		maxAgeLimit: snap.config.JWKSMaxAge, nextRemoval: doc.nextRemoval}
	interval := reassertSeconds
	if doc.nextRemoval != forever {
		interval = min(interval, max(1, (doc.nextRemoval-now)/2))
	}
	pc.reassertAt = now + interval
	if doc.nextRemoval != forever {
		pc.maxAge = min(pc.maxAge, doc.nextRemoval-pc.reassertAt)
	}
	pc.maxAge = max(pc.maxAge, 0)
	cc := fmt.Sprintf("public, max-age=%d", pc.maxAge)
	h := sha256.New()
	pc.objects = append(pc.objects, copyObject{name: p.Prefix + p.JWKSPath, body: doc.body, cacheControl: cc})
	if p.publishesDiscovery(snap.config.Issuer) {
		d, err := b.document(snap, discoveryScope, now)
		if err != nil {
			return nil, err
		}
		if d != nil {
			body, err := withJWKSURI(d.body, p.PublicURL+p.JWKSPath)
			if err != nil {
				return nil, err
			}
			pc.objects = append(pc.objects, copyObject{name: p.Prefix + discoveryObject, body: body, cacheControl: cc})
		}
	}
	for _, o := range pc.objects {
		fmt.Fprintf(h, "%s\x00%d\x00", o.name, len(o.body))
		h.Write(o.body)
	}
	pc.hash = hex.EncodeToString(h.Sum(nil))
	return pc, nil
}

// withJWKSURI is the served discovery document with jwks_uri pointing at
// the published copy of the JWKS.
func withJWKSURI(body []byte, uri string) ([]byte, error) {
	var d discoveryBody
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, err
	}
	d.JWKSURI = uri
	return json.Marshal(d)
}

// due reports whether p's copy is to be uploaded at now.
func (pc *plannedCopy) due(st *publisherState, p *publisherEntry, now int64) bool {
	if st == nil || st.Destination != p.destination() {
		return true
	}
	if st.Failures > 0 {
		wait := min(publishRetryMaxSeconds, int64(1)<<min(st.Failures-1, 10))
		if st.LastAttemptWall != 0 && pc.wall != 0 {
			return pc.wall >= st.LastAttemptWall+wait || pc.wall < st.LastAttemptWall
		}
		return now >= st.LastAttemptAt+wait || now < st.LastAttemptAt
	}
	// The hash covers the bodies alone: a lower jwks_max_age, or a removal
	// brought forward (a forced rotation, a shorter verification_ttl),
	// leaves them as they were, and the max-age written with them would
	// let caches keep a kid past its removal.
	outrun := st.MaxAge > pc.maxAgeLimit || (pc.nextRemoval != forever && now+st.MaxAge > pc.nextRemoval)
	return st.Writing != "" || st.Hash != pc.hash || now >= st.NextReassert || outrun
}

// startPublishing starts the upload goroutine; stopPublishing stops it and
// waits for uploads in flight. Both are called by Vault's lifecycle:
// initialisation on the node that may write, and cleanup on seal,
// step-down, unmount and reload.
func (b *backend) startPublishing(s logical.Storage) {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	if b.pub.cancel != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	b.pub.cancel, b.pub.done = cancel, done
	go func() {
		defer close(done)
		t := time.NewTicker(publishTick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				b.publishPass(ctx, s, false)
			}
		}
	}()
}

func (b *backend) stopPublishing() {
	b.pub.mu.Lock()
	cancel, done := b.pub.cancel, b.pub.done
	b.pub.cancel, b.pub.done = nil, nil
	b.pub.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
	b.pub.uploads.Wait()
}

// publishPass starts an upload for every publisher that is due and not
// already uploading, then lets the gate decide on activations that are
// near. With wait (tests) it runs every upload that is due itself, one
// after another, before the gate.
func (b *backend) publishPass(ctx context.Context, s logical.Storage, wait bool) {
	var err error
	defer b.recoverPanic("publish", &err)
	snap, clk, err := b.state(ctx, s)
	if err != nil {
		b.log().Warn("publishing: cannot read state", "error", err)
		return
	}
	if len(snap.publishers) == 0 {
		return
	}
	now := clk.Schedule
	states, err := b.publisherStates(ctx, s)
	if err != nil {
		b.log().Warn("publishing: cannot read publisher states", "error", err)
		return
	}
	for _, name := range slices.Sorted(maps.Keys(snap.publishers)) {
		p := snap.publishers[name]
		pc, err := b.plan(snap, p, now)
		if err != nil {
			b.log().Error("publishing: cannot render the copy", "publisher", name, "error", err)
			continue
		}
		pc.wall = clk.Wall
		if !pc.due(states[name], p, now) || !b.claim(name) {
			continue
		}
		if wait {
			// A pass run by hand uploads one publisher after another, in
			// name order, so that what it does never depends on how
			// uploads interleave.
			b.uploadGuarded(ctx, s, snap, name, p, pc, states[name], now)
			b.release(name)
			continue
		}
		select {
		case b.pub.slots <- struct{}{}:
		default:
			// All slots busy: this publisher waits for the next pass.
			b.release(name)
			continue
		}
		b.pub.uploads.Add(1)
		go func() {
			defer func() { <-b.pub.slots; b.release(name); b.pub.uploads.Done() }()
			b.uploadGuarded(ctx, s, snap, name, p, pc, states[name], now)
		}()
	}
	if err := b.gatePass(ctx, s); err != nil && !errors.Is(err, context.Canceled) {
		b.log().Warn("publishing: activation gate not applied", "error", err)
	}
}

// uploadGuarded is upload with a panic turned into a log line and a count,
// as for requests: one plugin process serves every mount.
func (b *backend) uploadGuarded(ctx context.Context, s logical.Storage, snap *snapshot, name string, p *publisherEntry, pc *plannedCopy, prev *publisherState, now int64) {
	var err error
	defer b.recoverPanic("publish", &err)
	b.upload(ctx, s, snap, name, p, pc, prev, now)
}

func (b *backend) claim(name string) bool {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	if b.pub.inflight[name] {
		return false
	}
	b.pub.inflight[name] = true
	return true
}

func (b *backend) release(name string) {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	delete(b.pub.inflight, name)
}

// sinkOf returns the sink of a publisher entry, made once per stored
// version of the entry (a write replaces the entry, and with it the sink).
func (b *backend) sinkOf(p *publisherEntry, allowAmbient bool) (sink, error) {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	if sk, ok := b.pub.sinks[p]; ok {
		return sk, nil
	}
	sk, err := b.newSink(p, allowAmbient)
	if err != nil {
		return nil, err
	}
	// Entries no longer stored are forgotten with their sinks.
	current := map[*publisherEntry]bool{}
	for _, q := range b.publishersNow() {
		current[q] = true
	}
	for old := range b.pub.sinks {
		if !current[old] {
			delete(b.pub.sinks, old)
		}
	}
	b.pub.sinks[p] = sk
	return sk, nil
}

func (b *backend) publishersNow() map[string]*publisherEntry {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.publishers
}

// upload writes p's planned copy, reads it back, and stores the outcome.
// The attempt (writes and read-back) is cut off after the attempt timeout;
// the outcome is stored under ctx alone, so that an attempt cut off by its
// deadline is still recorded as a timeout, counted and retried on the
// backoff schedule.
func (b *backend) upload(ctx context.Context, s logical.Storage, snap *snapshot, name string, p *publisherEntry, pc *plannedCopy, prev *publisherState, now int64) {
	st := &publisherState{Version: schemaVersion, Destination: p.destination(), Objects: map[string]objectState{}, KIDs: []string{}}
	if prev != nil && prev.Destination == st.Destination {
		st = prev.clone()
	}
	st.LastAttemptAt, st.LastAttemptWall = now, pc.wall
	// Stored before the first put: what the store holds is known again
	// only once the outcome is stored. Not over a newer node's state: the
	// objects it recorded are not the ones this node started from.
	stored, err := readPublisherState(ctx, s, name)
	if err != nil {
		b.log().Warn("publishing: cannot read the publisher's state", "publisher", name, "error", err)
		return
	}
	if stored != nil && stored.Destination == st.Destination && !maps.Equal(stored.Objects, st.Objects) {
		b.forgetPublisherState(name)
		return
	}
	intent := st.clone()
	intent.Writing = pc.hash
	if err := b.storePublisherState(ctx, s, name, p, intent); err != nil {
		b.log().Warn("publishing: state not stored; not uploading", "publisher", name, "error", err)
		return
	}
	st.Writing = ""
	// The store's calls are bounded by the attempt's timeout; the state's
	// writes are not, so a store that hangs is recorded as failing.
	actx, cancel := context.WithTimeout(ctx, b.pub.attemptTimeout)
	defer cancel()
	err = b.writeCopy(ctx, actx, s, name, p, snap.config.PublishersAllowAmbientCredentials, pc, st)
	var via string
	var got []byte
	if err == nil {
		got, via, err = b.readBack(actx, p, snap.config.PublishersAllowAmbientCredentials)
	}
	if err == nil {
		if kids, perr := jwksKIDs(got); perr != nil {
			err = &sinkError{Op: "read_back", Object: p.Prefix + p.JWKSPath, Reason: reasonGarbage}
		} else {
			// What verifiers get is what the gate counts, even when a
			// cache in front of public_url still serves an older copy.
			st.KIDs = kids
			if !bytes.Equal(got, pc.jwks) {
				err = &sinkError{Op: "read_back", Object: p.Prefix + p.JWKSPath, Reason: reasonStale}
			}
		}
	}
	if err != nil {
		st.Failures++
		st.LastError, st.LastReason = err.Error(), sinkReason(err)
		b.metrics.publishFailures.WithLabelValues(name, st.LastReason).Inc()
		b.log().Warn("publishing failed; retrying", "publisher", name, "reason", st.LastReason, "error", err.Error(), "failures", st.Failures)
	} else {
		if st.Failures > 0 {
			b.log().Info("publishing recovered", "publisher", name, "after_failures", st.Failures)
		}
		st.Failures, st.LastError, st.LastReason = 0, "", ""
		st.Hash, st.AckedAt, st.AckedVia = pc.hash, now, via
		st.MaxAge, st.NextReassert = pc.maxAge, pc.reassertAt
		b.log().Debug("copy acknowledged", "publisher", name, "kids", len(st.KIDs), "via", via, "max_age", pc.maxAge)
	}
	if werr := b.storePublisherState(ctx, s, name, p, st); werr != nil {
		b.log().Warn("publishing: state not stored", "publisher", name, "error", werr)
	}
}

// writeCopy puts each object of the copy, conditionally on the ETag this
// mount last recorded for it. An object that is not the one recorded was
// deleted or changed out of band, or written by a node that has since
// taken over: if storage records a newer state, this pass stops (the next
// reads it); otherwise the object is written over and counted as restored.
//
// The store's calls run under actx, the attempt's deadline; the reads and
// writes of storage under ctx, so that a store that used up the attempt's
// time cannot make this node look unable to write storage.
func (b *backend) writeCopy(ctx, actx context.Context, s logical.Storage, name string, p *publisherEntry, allowAmbient bool, pc *plannedCopy, st *publisherState) error {
	if why := profileViolation(profileOf(p), pc.jwks); why != "" {
		b.log().Error("publishing: the copy breaks the publisher's profile; not uploaded", "publisher", name, "profile", profileOf(p).name, "holds", why)
		return &sinkError{Op: "put", Object: p.Prefix + p.JWKSPath, Reason: reasonProfile}
	}
	sk, err := b.sinkOf(p, allowAmbient)
	if err != nil {
		return err
	}
	for _, o := range pc.objects {
		prev := st.Objects[o.name]
		etag, err := sk.put(actx, o.name, o.body, o.cacheControl, prev.ETag)
		if r := sinkReason(err); err != nil && (r == reasonPrecondition || (r == reasonMissing && prev.ETag != "")) {
			stored, rerr := readPublisherState(ctx, s, name)
			if rerr != nil {
				return rerr
			}
			// A stored state of another destination is this mount's own
			// earlier copy (the publisher was changed), not a newer one.
			if stored != nil && stored.Destination == st.Destination && stored.Objects[o.name].ETag != prev.ETag {
				b.forgetPublisherState(name)
				return &sinkError{Op: "put", Object: o.name, Reason: reasonPrecondition}
			}
			// Storage agrees with this node's record, but what it read may
			// be its own stale copy: a node that lost leadership (a Raft
			// leader cut off, or paused, while another took over) still
			// reads its local storage, which lacks the new node's state.
			// Only a node that can still write storage writes over another
			// writer's object.
			if err := b.fenceOverwrite(ctx, s, name, p, st, pc.hash, o.name); err != nil {
				return err
			}
			_, cur, gerr := sk.get(actx, o.name)
			if gerr != nil && sinkReason(gerr) != reasonMissing {
				return gerr
			}
			etag, err = sk.put(actx, o.name, o.body, o.cacheControl, cur)
			if err == nil && prev.ETag != "" {
				st.Restored++
				b.metrics.publishRestored.WithLabelValues(name).Inc()
				b.log().Warn("copy changed or deleted outside the plugin; written again", "publisher", name, "object", o.name)
			}
		}
		if err != nil {
			return err
		}
		st.Objects[o.name] = objectState{ETag: etag, Hash: hashOf(o.body)}
	}
	return nil
}

// fenceOverwrite stores st before object, changed by another writer, is
// written over: a node that may no longer write storage (it lost
// leadership) is refused there, and so writes nothing to the store. What
// it stores still marks the copy of hash writing as in flight: should the
// node stop before the outcome is stored, the state must not read as the
// old copy acknowledged while the store holds the new one.
func (b *backend) fenceOverwrite(ctx context.Context, s logical.Storage, name string, p *publisherEntry, st *publisherState, writing, object string) error {
	b.pub.storeMu.Lock()
	defer b.pub.storeMu.Unlock()
	if b.publishersNow()[name] != p {
		return &sinkError{Op: "put", Object: object, Reason: reasonPrecondition}
	}
	fenced := st.clone()
	fenced.Writing = writing
	if err := putJSON(ctx, s, publisherStatePrefix+name, fenced); err != nil {
		b.log().Warn("publishing: an object changed by another writer is not written over: this node cannot write storage", "publisher", name, "object", object, "error", err)
		return &sinkError{Op: "put", Object: object, Reason: reasonPrecondition}
	}
	return nil
}

// readBack reads the JWKS copy as verifiers get it: through public_url
// when it answers, else through the store's API.
func (b *backend) readBack(ctx context.Context, p *publisherEntry, allowAmbient bool) ([]byte, string, error) {
	if p.PublicURL != "" {
		body, _, err := b.readPublic(ctx, p.PublicURL+p.JWKSPath)
		if err == nil {
			return body, "public_url", nil
		}
		if r := sinkReason(err); r != reasonUnreachable && r != reasonTimeout && r != reasonRefusedAddr {
			return nil, "public_url", err
		}
	}
	sk, err := b.sinkOf(p, allowAmbient)
	if err != nil {
		return nil, "", err
	}
	body, _, err := sk.get(ctx, p.Prefix+p.JWKSPath)
	return body, "store_api", err
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// jwksKIDs returns the kids of a JWKS document, in order.
func jwksKIDs(body []byte) ([]string, error) {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids, nil
}

// publisherStates returns the stored states of the mount's publishers,
// read from storage on first use.
func (b *backend) publisherStates(ctx context.Context, s logical.Storage) (map[string]*publisherState, error) {
	b.pub.mu.Lock()
	if b.pub.loaded {
		out := maps.Clone(b.pub.states)
		b.pub.mu.Unlock()
		return out, nil
	}
	b.pub.mu.Unlock()
	// Under storeMu, so no state is stored between the read and its use
	// here: an upload storing its outcome meanwhile would otherwise be
	// overwritten in memory by the older state read, and its next upload
	// would start from that.
	b.pub.storeMu.Lock()
	defer b.pub.storeMu.Unlock()
	b.pub.mu.Lock()
	loaded := b.pub.loaded
	b.pub.mu.Unlock()
	if !loaded {
		states, err := readAll(ctx, s, publisherStatePrefix, "publisher states", readPublisherState)
		if err != nil {
			return nil, err
		}
		b.pub.mu.Lock()
		b.pub.states, b.pub.loaded = states, true
		b.pub.mu.Unlock()
	}
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	return maps.Clone(b.pub.states), nil
}

func readPublisherState(ctx context.Context, s logical.Storage, name string) (*publisherState, error) {
	return readEntry(ctx, s, publisherStatePrefix+name, &publisherState{})
}

// storePublisherState stores st as name's state, unless the publisher was
// deleted or replaced while it uploaded.
func (b *backend) storePublisherState(ctx context.Context, s logical.Storage, name string, p *publisherEntry, st *publisherState) error {
	b.pub.storeMu.Lock()
	defer b.pub.storeMu.Unlock()
	if b.publishersNow()[name] != p {
		return nil
	}
	if err := putJSON(ctx, s, publisherStatePrefix+name, st); err != nil {
		return err
	}
	b.pub.mu.Lock()
	b.pub.states[name] = st
	b.pub.mu.Unlock()
	b.metrics.syncPublisher(name, st)
	return nil
}

// forgetAll drops every state and sink from memory (Clean).
func (pb *publishing) forgetAll() {
	pb.mu.Lock()
	defer pb.mu.Unlock()
	pb.loaded = false
	pb.states = map[string]*publisherState{}
	pb.sinks = map[*publisherEntry]sink{}
}

// forgetPublisherState drops name's state from memory; the next pass
// reads it from storage.
func (b *backend) forgetPublisherState(name string) {
	b.pub.mu.Lock()
	defer b.pub.mu.Unlock()
	b.pub.loaded = false
	delete(b.pub.states, name)
}

// deletePublisherState deletes name's stored state (with the publisher).
func (b *backend) deletePublisherState(ctx context.Context, s logical.Storage, name string) error {
	b.pub.storeMu.Lock()
	defer b.pub.storeMu.Unlock()
	if err := s.Delete(ctx, publisherStatePrefix+name); err != nil {
		return err
	}
	b.pub.mu.Lock()
	delete(b.pub.states, name)
	b.pub.mu.Unlock()
	b.metrics.syncPublisher(name, nil)
	return nil
}

// gatePass lets the gate decide on activations that are near in rings a
// required publisher covers, between maintenance passes: the publisher
// gate's horizon is seconds, not ticks. It takes the write lock only when
// some ring has such a decision to make.
func (b *backend) gatePass(ctx context.Context, s logical.Storage) error {
	needs := func(snap *snapshot, now int64) []string {
		var names []string
		for _, name := range slices.Sorted(maps.Keys(snap.rings)) {
			r := snap.rings[name]
			if r.DeletedAt != 0 || r.MaxActivationDelay <= 0 || len(requiredPublishers(snap.publishers, name)) == 0 {
				continue
			}
			if _, p := activeAndPending(r.Keys, now); p >= 0 {
				if k := &r.Keys[p]; k.GateOrigin != 0 || k.ActivateAt <= now+publisherGateHorizonSeconds {
					names = append(names, name)
				}
			}
		}
		return names
	}
	snap, clk, err := b.state(ctx, s)
	if err != nil || len(needs(snap, clk.Schedule)) == 0 {
		return err
	}
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, clk, err = b.state(ctx, s)
	if err != nil {
		return err
	}
	now := clk.Schedule
	states, err := b.publisherStates(ctx, s)
	if err != nil {
		return err
	}
	view := b.gateOf(snap, now, states)
	for _, name := range needs(snap, now) {
		old := snap.rings[name]
		r := old.clone()
		if !b.applyGate(r, now, view) {
			continue
		}
		if _, _, err := b.commitRing(ctx, s, old, r, now); err != nil {
			return err
		}
	}
	return nil
}

// publisherVerdict is what the verifier report and the metrics say of one
// publisher, computed by one function so they cannot disagree.
type publisherVerdict struct {
	Name     string
	State    string // "current", "behind", "failing" or "never_published"
	Required bool
	Ring     string
	KIDs     []string
	// BehindSeconds is how long the copy has lacked what the plugin
	// serves for its scope: 0 while they hold the same kids.
	BehindSeconds int64
	// Unserved are kids in the copy the plugin no longer serves; Revoked
	// those of them that were revoked (a revoked kid still in a copy is
	// the alert to page on).
	Unserved []string
	Revoked  []string
	st       *publisherState
}

// publisherVerdicts judges every publisher against what the plugin serves
// at now.
func (b *backend) publisherVerdicts(snap *snapshot, states map[string]*publisherState, now int64) []publisherVerdict {
	var out []publisherVerdict
	for _, name := range slices.Sorted(maps.Keys(snap.publishers)) {
		p := snap.publishers[name]
		v := publisherVerdict{Name: name, Required: p.Required, Ring: p.Ring, KIDs: []string{}, Unserved: []string{}, Revoked: []string{}, st: states[name]}
		doc, _ := b.document(snap, p.Ring, now)
		var served []string
		changedAt := int64(0)
		if doc != nil {
			served, changedAt = doc.kids, doc.changedAt
		}
		st := states[name]
		if st == nil || st.Destination != p.destination() || st.AckedAt == 0 {
			v.State = "never_published"
			if st != nil && st.Failures > 0 {
				v.State = "failing"
			}
			if len(served) > 0 {
				v.BehindSeconds = max(0, now-changedAt)
			}
			out = append(out, v)
			continue
		}
		v.KIDs = slices.Clone(st.KIDs)
		for _, kid := range st.KIDs {
			if !slices.Contains(served, kid) {
				v.Unserved = append(v.Unserved, kid)
				if revokedKID(snap, kid) {
					v.Revoked = append(v.Revoked, kid)
				}
			}
		}
		// A copy being written that is not the acknowledged one may be in
		// the store already (a crash between the upload and the state);
		// a re-assertion of the same copy leaves it current.
		same := len(v.Unserved) == 0 && len(served) == len(st.KIDs) && (st.Writing == "" || st.Writing == st.Hash)
		switch {
		case !same:
			v.State, v.BehindSeconds = "behind", max(0, now-max(changedAt, st.AckedAt))
		case st.Failures > 0:
			v.State = "failing"
		default:
			v.State = "current"
		}
		out = append(out, v)
	}
	return out
}

// revokedKID reports whether kid is a revoked key of some ring.
func revokedKID(snap *snapshot, kid string) bool {
	for _, r := range snap.rings {
		for i := range r.Keys {
			if r.Keys[i].KID == kid && r.Keys[i].revoked() {
				return true
			}
		}
	}
	return false
}

// report is the verifier report's entry for the publisher.
func (v *publisherVerdict) report() map[string]any {
	e := map[string]any{
		"state": v.State, "required": v.Required, "ring": v.Ring, "kids": v.KIDs,
		"behind_seconds": v.BehindSeconds, "unserved_kids": v.Unserved, "revoked_kids": v.Revoked,
		"last_success": int64(0), "last_error": "", "last_error_reason": "", "failures": int64(0),
		"acknowledged_via": "", "max_age": int64(0), "restored": int64(0),
	}
	if st := v.st; st != nil {
		e["last_success"], e["acknowledged_via"], e["max_age"] = st.AckedAt, st.AckedVia, st.MaxAge
		e["last_error"], e["last_error_reason"], e["failures"], e["restored"] = st.LastError, st.LastReason, st.Failures, st.Restored
	}
	return e
}
