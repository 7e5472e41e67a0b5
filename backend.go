// Package jwtrotor is a Vault secrets engine that holds JWT signing keys,
// rotates them on a schedule that pre-publishes every key before it signs,
// signs tokens under per-role policy, and serves the public keys as a JWKS
// with caching that follows the rotation schedule.
package jwtrotor

import (
	"context"
	"crypto/rsa"
	"fmt"
	"maps"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Version is the plugin's semantic version, set at build time with
// -ldflags "-X github.com/jwt-rotor/vault-plugin-jwt-rotor.Version=v0.1.0"
// so that `vault plugin register -version` and the running plugin agree.
var Version = "v0.1.0-dev"

type backend struct {
	*framework.Backend
	logger hclog.Logger

	// clock is the schedule clock (clock.go); every reading of time goes
	// through it. keys makes new key pairs, wrapKeys the import wrapping
	// key; tests replace all three.
	clock    *scheduleClock
	keys     keySource
	wrapKeys wrappingKeySource

	// writeLock serialises every storage write of the mount, which also makes
	// cross-object checks (role against ring against config) hold under
	// concurrent writers. Writes are rare; the sign and JWKS paths never take
	// it.
	writeLock sync.Mutex

	// mu guards the in-memory copy of storage below. Entries in the maps are
	// never mutated after they are stored there: writers store clones.
	mu     sync.RWMutex
	loaded bool
	dirty  map[string]bool
	config *configEntry
	// declared is who counts as a declared verifier under config.
	declared declaredSet
	rings    map[string]*ringEntry
	roles    map[string]*roleEntry
	// publishers are the mount's publishers (publishers.go), credentials
	// included: never put into a response or a log line.
	publishers map[string]*publisherEntry
	signers    map[string]*cachedSigner
	jwks       map[string]*renderedJWKS
	// wrapping is the parsed import wrapping key (wrapping.go), once read.
	wrapping *rsa.PrivateKey
	// gen counts changes of the state documents are rendered from; a
	// document rendered from an older generation is never cached.
	gen uint64
	// tracker observes JWKS fetches; it lives on the node that served them.
	tracker *verifierTracker
	metrics *metrics
	// lastPass is the time of the last maintenance pass; manualKIDs are
	// keys activated by rotate or revoke, counted there. Together they count
	// every scheduled activation once (maintenance runs under writeLock).
	lastPass   int64
	manualKIDs map[string]bool
	// sweptRings records rings (and "" for the mount) whose orphaned
	// private halves this process has already swept.
	sweptRings map[string]bool
	// undeleted are private halves whose delete failed after the ring that
	// released them was written; maintenance retries them (under writeLock).
	undeleted map[string]bool

	// pub is the upload machinery (publish.go). newSink makes a
	// publisher's sink and readPublic reads a copy through its public URL;
	// the model test stands in-memory stores in for both.
	pub *publishing
	// uploadLoop is set by Factory: the upload goroutine runs in Vault,
	// never in tests that build a backend themselves and run passes by
	// hand (publishPass).
	uploadLoop bool
	newSink    func(p *publisherEntry, allowAmbient bool) (sink, error)
	readPublic func(ctx context.Context, url string) ([]byte, string, error)

	// afterRender, when set by a test, runs between rendering a document
	// and caching it.
	afterRender func()
}

// keySource generates a key pair for a ring's algorithm and RSA size.
type keySource func(alg string, rsaBits int) (*generatedKey, error)

// Factory is the plugin's entry point.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(systemClock{start: time.Now()})
	b.uploadLoop = true
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	b.logger = conf.Logger
	if b.logger == nil {
		b.logger = hclog.NewNullLogger()
	}
	return b, nil
}

func newBackend(src clockSource) *backend {
	b := &backend{
		clock: newScheduleClock(src), keys: generateKey, wrapKeys: generateWrappingKey,
		tracker: newVerifierTracker(), manualKIDs: map[string]bool{}, undeleted: map[string]bool{},
		pub: newPublishing(), newSink: newSink,
	}
	public := outboundClient(publishAttemptTimeout)
	b.readPublic = func(ctx context.Context, url string) ([]byte, string, error) { return readPublic(ctx, public, url) }
	b.metrics = newMetrics(b)
	b.clock.notify = b.clockChanged
	b.resetCache()
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			Unauthenticated: []string{
				"jwks",
				"jwks/*",
				".well-known/*",
			},
			SealWrapStorage: []string{
				privatePrefix,
				wrappingPrefix,
				publisherPrefix,
			},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathKeys(b),
			pathImport(b),
			[]*framework.Path{pathTrust(b)},
			pathRoles(b),
			pathPublishers(b),
			pathSnapshot(b),
			[]*framework.Path{pathToken(b)},
			[]*framework.Path{pathSign(b), pathVerifiers(b), pathMetrics(b)},
			pathClock(b),
			pathJWKS(b),
		),
		PeriodicFunc: func(ctx context.Context, req *logical.Request) (err error) {
			defer b.recoverPanic("periodic", &err)
			return b.periodic(ctx, req)
		},
		Invalidate: func(ctx context.Context, key string) {
			var err error
			defer b.recoverPanic("invalidate", &err)
			b.invalidate(ctx, key)
		},
		InitializeFunc: func(_ context.Context, req *logical.InitializationRequest) error {
			// Uploads run where storage may be written: the active node
			// of the primary cluster.
			if b.uploadLoop && b.WriteSafeReplicationState() {
				b.startPublishing(req.Storage)
			}
			return nil
		},
		Clean: func(context.Context) {
			b.stopPublishing()
			b.resetCache()
		},
		RunningVersion: Version,
	}
	return b
}

// op declares one operation of a path for Vault's router, its OpenAPI
// document and vault path-help: the handler, the verb and suffix of its
// operation id (after the mount's prefix), a one-line summary, and what it
// answers (nil: 204 No Content).
func op(cb framework.OperationFunc, verb, suffix, summary string, answer map[string]*framework.FieldSchema) *framework.PathOperation {
	resp := framework.Response{Description: "OK", Fields: answer}
	status := http.StatusOK
	if answer == nil {
		status, resp = http.StatusNoContent, framework.Response{Description: "No Content"}
	}
	return &framework.PathOperation{
		Callback:     cb,
		Summary:      summary,
		DisplayAttrs: &framework.DisplayAttributes{OperationVerb: verb, OperationSuffix: suffix},
		Responses:    map[int][]framework.Response{status: {resp}},
	}
}

// writeOp is op for an operation that writes storage: on a performance
// standby or secondary it is forwarded to the node that may write.
func writeOp(cb framework.OperationFunc, verb, suffix, summary string, answer map[string]*framework.FieldSchema) *framework.PathOperation {
	o := op(cb, verb, suffix, summary, answer)
	o.ForwardPerformanceStandby, o.ForwardPerformanceSecondary = true, true
	return o
}

// HandleRequest checks writes and deletes against their path's schema before the
// framework sees them: an unknown field, a null or a value of the wrong type
// is a 400 that names the field and the fix, never a silently ignored
// parameter. A panic anywhere below becomes an error for this request alone:
// one plugin process serves every mount.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (resp *logical.Response, err error) {
	defer b.recoverPanic("request", &err)
	if req.Operation == logical.CreateOperation || req.Operation == logical.UpdateOperation || req.Operation == logical.DeleteOperation {
		if p := b.Route(req.Path); p != nil {
			if err := checkFields(p, req); err != nil {
				return respond(err)
			}
		}
	}
	// The query parameters of a token/<role> read, likewise.
	if err := checkTokenQuery(req); err != nil {
		return respond(err)
	}
	return b.Backend.HandleRequest(ctx, req)
}

// HandleExistenceCheck applies the same field checks first. A request that
// fails them is reported as having no existence check, so it goes on to
// HandleRequest as an update and gets the same clear 400 there.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (found, exists bool, err error) {
	defer b.recoverPanic("existence check", &err)
	if p := b.Route(req.Path); p != nil {
		if err := checkFields(p, req); err != nil {
			return false, false, nil
		}
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// recoverPanic turns a panic into *err. It logs where it happened and the
// panic value, never the request's data, and counts it.
func (b *backend) recoverPanic(where string, err *error) {
	r := recover()
	if r == nil {
		return
	}
	b.metrics.panics.WithLabelValues(where).Inc()
	b.log().Error("recovered from a panic; the request failed, the plugin goes on", "in", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	*err = fmt.Errorf("internal error in the jwt-rotor plugin (%s); it was logged, and nothing of this request was stored", where)
}

func (b *backend) log() hclog.Logger {
	if b.logger == nil {
		return hclog.NewNullLogger()
	}
	return b.logger
}

// now is the schedule time in Unix seconds (clock.go): never earlier than
// any time this backend has already acted on.
func (b *backend) now() int64 {
	return b.clock.read().Schedule
}

// observe raises the high-water mark to a time read from storage.
func (b *backend) observe(t int64) {
	b.clock.observe(t)
}

// clockChanged logs and counts a hold of the schedule and its end.
func (b *backend) clockChanged(ev clockEvent) {
	switch ev.kind {
	case "held":
		b.metrics.clockSteps.Inc()
		b.log().Warn("the wall clock stepped forward without real time passing; the key schedule is held behind it until the clock is corrected or the new time is accepted (write clock/accept)",
			"step_seconds", ev.stepSeconds, "held_seconds", ev.heldSeconds)
	case "released":
		b.log().Info("the wall clock stepped back in line with real time; the key schedule follows it again", "step_seconds", ev.stepSeconds)
	case "accepted":
		b.log().Warn("new wall clock time accepted; the key schedule jumped forward", "jump_seconds", ev.heldSeconds)
	}
}

func (b *backend) resetCache() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.loaded = false
	b.dirty = map[string]bool{}
	b.config = nil
	b.rings = map[string]*ringEntry{}
	b.roles = map[string]*roleEntry{}
	b.publishers = map[string]*publisherEntry{}
	b.signers = map[string]*cachedSigner{}
	b.jwks = map[string]*renderedJWKS{}
	b.wrapping = nil
	b.gen++
	b.sweptRings = map[string]bool{}
	b.pub.forgetAll()
}

// invalidate is called when another node (a performance standby or
// secondary) changed storage; it drops exactly what the change touched, using
// the same prefixes the writers use.
func (b *backend) invalidate(_ context.Context, key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case key == configPath, strings.HasPrefix(key, ringPrefix), strings.HasPrefix(key, rolePrefix):
		b.dirty[key] = true
		b.jwks = map[string]*renderedJWKS{}
		b.gen++
	case strings.HasPrefix(key, publisherPrefix):
		// No document is rendered from a publisher: the JWKS cache stays.
		b.dirty[key] = true
	case strings.HasPrefix(key, publisherStatePrefix):
		b.pub.mu.Lock()
		b.pub.loaded = false
		b.pub.mu.Unlock()
	case strings.HasPrefix(key, privatePrefix):
		id := key[strings.LastIndex(key, "/")+1:]
		delete(b.signers, id)
	case key == wrappingPath:
		b.wrapping = nil
	}
}

// snapshot is a consistent view of the mount's configuration objects, and
// the generation of the document cache it belongs to.
type snapshot struct {
	config   *configEntry
	declared declaredSet
	rings    map[string]*ringEntry
	roles    map[string]*roleEntry
	// publishers hold credentials: handlers answer with publisherData.
	publishers map[string]*publisherEntry
	gen        uint64
}

// state loads the snapshot, then reads the clock: in that order, so the
// high-water mark stored by earlier runs always bounds the time.
func (b *backend) state(ctx context.Context, s logical.Storage) (*snapshot, reading, error) {
	snap, err := b.load(ctx, s)
	if err != nil {
		return nil, reading{}, err
	}
	return snap, b.clock.read(), nil
}

// load returns the in-memory copy of storage, reading storage only on first
// use and for entries another node changed since.
func (b *backend) load(ctx context.Context, s logical.Storage) (*snapshot, error) {
	b.mu.RLock()
	if b.loaded && len(b.dirty) == 0 {
		snap := &snapshot{config: b.config, declared: b.declared, rings: b.rings, roles: b.roles, publishers: b.publishers, gen: b.gen}
		b.mu.RUnlock()
		return snap, nil
	}
	b.mu.RUnlock()

	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.loaded {
		if err := b.loadAll(ctx, s); err != nil {
			return nil, err
		}
		b.loaded = true
		b.dirty = map[string]bool{}
	}
	if len(b.dirty) > 0 {
		rings := copyMap(b.rings)
		roles := copyMap(b.roles)
		publishers := copyMap(b.publishers)
		for key := range b.dirty {
			switch {
			case key == configPath:
				c, err := readConfig(ctx, s)
				if err != nil {
					return nil, err
				}
				b.config, b.declared = c, declaredBy(c)
			case strings.HasPrefix(key, ringPrefix):
				name := strings.TrimPrefix(key, ringPrefix)
				r, err := reread(ctx, s, rings, name, readRing)
				if err != nil {
					return nil, err
				}
				if r != nil {
					b.observe(r.HighWater)
				}
				b.metrics.syncRing(name, r)
			case strings.HasPrefix(key, rolePrefix):
				if _, err := reread(ctx, s, roles, strings.TrimPrefix(key, rolePrefix), readRole); err != nil {
					return nil, err
				}
			case strings.HasPrefix(key, publisherPrefix):
				if _, err := reread(ctx, s, publishers, strings.TrimPrefix(key, publisherPrefix), readPublisher); err != nil {
					return nil, err
				}
			}
		}
		b.rings, b.roles, b.publishers = rings, roles, publishers
		b.dirty = map[string]bool{}
	}
	return &snapshot{config: b.config, declared: b.declared, rings: b.rings, roles: b.roles, publishers: b.publishers, gen: b.gen}, nil
}

func (b *backend) loadAll(ctx context.Context, s logical.Storage) error {
	c, err := readConfig(ctx, s)
	if err != nil {
		return err
	}
	clock := &clockEntry{}
	if _, err := getJSON(ctx, s, clockPath, clock); err != nil {
		return err
	}
	b.observe(clock.HighWater)
	rings, err := readAll(ctx, s, ringPrefix, "rings", readRing)
	if err != nil {
		return err
	}
	for _, r := range rings {
		b.observe(r.HighWater)
	}
	roles, err := readAll(ctx, s, rolePrefix, "roles", readRole)
	if err != nil {
		return err
	}
	publishers, err := readAll(ctx, s, publisherPrefix, "publishers", readPublisher)
	if err != nil {
		return err
	}
	b.config, b.declared, b.rings, b.roles, b.publishers = c, declaredBy(c), rings, roles, publishers
	return nil
}

// reread reads the entry name from storage into m, or drops it from m when
// it is gone.
func reread[V any](ctx context.Context, s logical.Storage, m map[string]*V, name string, read func(context.Context, logical.Storage, string) (*V, error)) (*V, error) {
	v, err := read(ctx, s, name)
	if err != nil {
		return nil, err
	}
	setOrDelete(m, name, v)
	return v, nil
}

// readAll reads every entry under prefix, by its name there.
func readAll[V any](ctx context.Context, s logical.Storage, prefix, what string, read func(context.Context, logical.Storage, string) (*V, error)) (map[string]*V, error) {
	names, err := s.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	out := map[string]*V{}
	for _, n := range names {
		v, err := read(ctx, s, n)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out[n] = v
		}
	}
	return out, nil
}

// namesWhere returns the names in m whose value keep accepts, sorted (nil
// when none is).
func namesWhere[V any](m map[string]V, keep func(V) bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(m)) {
		if keep(m[n]) {
			out = append(out, n)
		}
	}
	return out
}

// objectExists is the existence check of <family>/<name>, whose objects
// of the snapshot are objects(snap).
func objectExists[V any](b *backend, objects func(*snapshot) map[string]*V) framework.ExistenceFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
		snap, err := b.load(ctx, req.Storage)
		if err != nil {
			return false, err
		}
		return objects(snap)[d.Get("name").(string)] != nil, nil
	}
}

// objectRead reads <family>/<name> as data answers it (a 404 when there
// is no such object).
func objectRead[V any](b *backend, objects func(*snapshot) map[string]*V, data func(*V) map[string]any) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		snap, err := b.load(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		v := objects(snap)[d.Get("name").(string)]
		if v == nil {
			return nil, nil
		}
		return &logical.Response{Data: data(v)}, nil
	}
}

// listPath declares <family>/, which lists the names of the family's
// objects (plural) that names returns.
func (b *backend) listPath(family, plural, entries string, names func(*snapshot) []string) *framework.Path {
	list := func(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
		snap, err := b.load(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		return logical.ListResponse(names(snap)), nil
	}
	return &framework.Path{
		Pattern: family + "/?$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: family,
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: op(list, "list", family, "List the "+plural+" of this mount.", map[string]*framework.FieldSchema{
				"keys": {Type: framework.TypeStringSlice, Description: entries},
			}),
		},
		HelpSynopsis:    "List " + plural + ".",
		HelpDescription: "Lists the names of the " + plural + " of this mount.",
	}
}

func copyMap[V any](m map[string]V) map[string]V {
	c := make(map[string]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func setOrDelete[V any](m map[string]*V, k string, v *V) {
	if v == nil {
		delete(m, k)
		return
	}
	m[k] = v
}

// replaced returns a copy of m with name set to v, or without name when v
// is nil: maps a snapshot holds are never changed in place.
func replaced[V any](m map[string]*V, name string, v *V) map[string]*V {
	c := copyMap(m)
	setOrDelete(c, name, v)
	return c
}

// The setters below run after a successful storage write, under writeLock.

func (b *backend) cacheConfig(c *configEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.config, b.declared = c, declaredBy(c)
	b.jwks = map[string]*renderedJWKS{}
	b.gen++
}

func (b *backend) cacheRing(name string, r *ringEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rings = replaced(b.rings, name, r)
	b.jwks = map[string]*renderedJWKS{}
	b.gen++
	b.metrics.syncRing(name, r)
}

func (b *backend) cacheRole(name string, r *roleEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.roles = replaced(b.roles, name, r)
}

func (b *backend) cachePublisher(name string, p *publisherEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.publishers = replaced(b.publishers, name, p)
}

const backendHelp = `
The jwt-rotor secrets engine signs JWTs for workloads with keys that never
leave Vault, and rotates those keys on a schedule.

Each key ring (keys/<name>) pre-publishes its next key in the JWKS for at least
publish_lead before it signs, and keeps a retired key published for
verification_ttl after its last token could have been issued. Roles
(roles/<name>) say which ring signs, for which audiences and subjects, with
which claims and TTLs; sign/<role> issues a token, and so does a read of
token/<role> for roles with allow_token_read=true. The JWKS (jwks,
.well-known/jwks.json) and the OpenID discovery document
(.well-known/openid-configuration) are served without a token, with
Cache-Control and ETag that follow the rotation schedule.

Publishers (publishers/<name>) name S3 buckets and WebDAV servers that are
to hold copies of the JWKS and discovery document for verifiers that cannot
reach Vault; this version stores and checks them, and does not upload yet.

Set config issuer first: signing is refused until it is set.
`
