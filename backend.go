// Package jwtrotor is a Vault secrets engine that holds JWT signing keys,
// rotates them on a schedule that pre-publishes every key before it signs,
// signs tokens under per-role policy, and serves the public keys as a JWKS
// with caching that follows the rotation schedule.
package jwtrotor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
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

	// clock is the wall clock; tests replace it. Every use goes through now().
	clock func() time.Time
	// highWater is the latest time this backend has acted on, so state is
	// never derived from an earlier time if the wall clock steps back.
	highWater atomic.Int64

	// writeLock serialises every storage write of the mount, which also makes
	// cross-object checks (role against ring against config) hold under
	// concurrent writers. Writes are rare; the sign and JWKS paths never take
	// it.
	writeLock sync.Mutex

	// mu guards the in-memory copy of storage below. Entries in the maps are
	// never mutated after they are stored there: writers store clones.
	mu      sync.RWMutex
	loaded  bool
	dirty   map[string]bool
	config  *configEntry
	rings   map[string]*ringEntry
	roles   map[string]*roleEntry
	signers map[string]*cachedSigner
	jwks    map[string]*renderedJWKS
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
}

// Factory is the plugin's entry point.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(time.Now)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	b.logger = conf.Logger
	if b.logger == nil {
		b.logger = hclog.NewNullLogger()
	}
	return b, nil
}

func newBackend(clock func() time.Time) *backend {
	b := &backend{clock: clock, tracker: newVerifierTracker(), manualKIDs: map[string]bool{}}
	b.metrics = newMetrics(b)
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
			},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b)},
			pathKeys(b),
			pathRoles(b),
			[]*framework.Path{pathToken(b)},
			[]*framework.Path{pathSign(b), pathVerifiers(b), pathMetrics(b)},
			pathJWKS(b),
		),
		PeriodicFunc:   b.periodic,
		Invalidate:     b.invalidate,
		Clean:          func(context.Context) { b.resetCache() },
		RunningVersion: Version,
	}
	return b
}

// writeOp declares an operation that writes storage: on a performance
// standby or secondary it is forwarded to the node that may write.
func writeOp(cb framework.OperationFunc) *framework.PathOperation {
	return &framework.PathOperation{Callback: cb, ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true}
}

// crudOperations declares read, create, update and delete of a named object.
func crudOperations(read, write, del framework.OperationFunc) map[logical.Operation]framework.OperationHandler {
	return map[logical.Operation]framework.OperationHandler{
		logical.ReadOperation:   &framework.PathOperation{Callback: read},
		logical.CreateOperation: writeOp(write),
		logical.UpdateOperation: writeOp(write),
		logical.DeleteOperation: writeOp(del),
	}
}

// HandleRequest checks writes and deletes against their path's schema before the
// framework sees them: an unknown field or a value of the wrong type is a
// 400 that names the field and the fix, never a silently ignored parameter.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req.Operation == logical.CreateOperation || req.Operation == logical.UpdateOperation || req.Operation == logical.DeleteOperation {
		if p := b.Route(req.Path); p != nil {
			if resp := checkFields(p, req); resp != nil {
				return resp, logical.ErrInvalidRequest
			}
		}
	}
	// The query parameters of a token/<role> read, likewise.
	if resp := checkTokenQuery(req); resp != nil {
		return resp, logical.ErrInvalidRequest
	}
	return b.Backend.HandleRequest(ctx, req)
}

// HandleExistenceCheck applies the same field checks first. A request that
// fails them is reported as having no existence check, so it goes on to
// HandleRequest as an update and gets the same clear 400 there.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if p := b.Route(req.Path); p != nil {
		if resp := checkFields(p, req); resp != nil {
			return false, false, nil
		}
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

func (b *backend) log() hclog.Logger {
	if b.logger == nil {
		return hclog.NewNullLogger()
	}
	return b.logger
}

// now is the current time in Unix seconds, never earlier than any time this
// backend has already acted on.
func (b *backend) now() int64 {
	t := b.clock().Unix()
	for {
		hw := b.highWater.Load()
		if t <= hw {
			return hw
		}
		if b.highWater.CompareAndSwap(hw, t) {
			return t
		}
	}
}

// observe raises the high-water mark to a time read from storage.
func (b *backend) observe(t int64) {
	for {
		hw := b.highWater.Load()
		if t <= hw || b.highWater.CompareAndSwap(hw, t) {
			return
		}
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
	b.signers = map[string]*cachedSigner{}
	b.jwks = map[string]*renderedJWKS{}
	b.sweptRings = map[string]bool{}
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
	case strings.HasPrefix(key, privatePrefix):
		kid := key[strings.LastIndex(key, "/")+1:]
		delete(b.signers, kid)
	}
}

// snapshot is a consistent view of the mount's configuration objects.
type snapshot struct {
	config *configEntry
	rings  map[string]*ringEntry
	roles  map[string]*roleEntry
}

// load returns the in-memory copy of storage, reading storage only on first
// use and for entries another node changed since.
func (b *backend) load(ctx context.Context, s logical.Storage) (*snapshot, error) {
	b.mu.RLock()
	if b.loaded && len(b.dirty) == 0 {
		snap := &snapshot{config: b.config, rings: b.rings, roles: b.roles}
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
		for key := range b.dirty {
			switch {
			case key == configPath:
				c, err := readConfig(ctx, s)
				if err != nil {
					return nil, err
				}
				b.config = c
			case strings.HasPrefix(key, ringPrefix):
				name := strings.TrimPrefix(key, ringPrefix)
				r, err := readRing(ctx, s, name)
				if err != nil {
					return nil, err
				}
				setOrDelete(rings, name, r)
				if r != nil {
					b.observe(r.HighWater)
				}
			case strings.HasPrefix(key, rolePrefix):
				name := strings.TrimPrefix(key, rolePrefix)
				r, err := readRole(ctx, s, name)
				if err != nil {
					return nil, err
				}
				setOrDelete(roles, name, r)
			}
		}
		b.rings, b.roles = rings, roles
		b.dirty = map[string]bool{}
	}
	return &snapshot{config: b.config, rings: b.rings, roles: b.roles}, nil
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
	rings := map[string]*ringEntry{}
	names, err := s.List(ctx, ringPrefix)
	if err != nil {
		return fmt.Errorf("list rings: %w", err)
	}
	for _, n := range names {
		r, err := readRing(ctx, s, n)
		if err != nil {
			return err
		}
		if r != nil {
			rings[n] = r
			b.observe(r.HighWater)
		}
	}
	roles := map[string]*roleEntry{}
	names, err = s.List(ctx, rolePrefix)
	if err != nil {
		return fmt.Errorf("list roles: %w", err)
	}
	for _, n := range names {
		r, err := readRole(ctx, s, n)
		if err != nil {
			return err
		}
		if r != nil {
			roles[n] = r
		}
	}
	b.config, b.rings, b.roles = c, rings, roles
	return nil
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

// The setters below run after a successful storage write, under writeLock.

func (b *backend) cacheConfig(c *configEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.config = c
	b.jwks = map[string]*renderedJWKS{}
}

func (b *backend) cacheRing(name string, r *ringEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rings := copyMap(b.rings)
	setOrDelete(rings, name, r)
	b.rings = rings
	b.jwks = map[string]*renderedJWKS{}
}

func (b *backend) cacheRole(name string, r *roleEntry) {
	b.mu.Lock()
	defer b.mu.Unlock()
	roles := copyMap(b.roles)
	setOrDelete(roles, name, r)
	b.roles = roles
}

func (b *backend) dropSigner(kid string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.signers, kid)
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

Set config issuer first: signing is refused until it is set.
`
