package jwtrotor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	jwtv5 "github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// fakeClock is the injected clock: a wall clock that tests move, step back
// and step forward, and a monotonic clock that only real time passing moves.
type fakeClock struct {
	mu   sync.Mutex
	now  time.Time
	mono time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Elapsed() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// Advance lets d of real time pass (both clocks move). A negative d steps
// the wall clock back, as a correction would; the monotonic clock stays.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	if d > 0 {
		c.mono += d
	}
}

// Step moves the wall clock alone, forward or back: an NTP step or a bad
// time source, with no real time passing.
func (c *fakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type testEnv struct {
	t       testing.TB
	b       *backend
	storage logical.Storage
	clock   *fakeClock
	logs    *bytes.Buffer
	entity  *logical.Entity
}

var testStart = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newEnv builds a backend the way Vault does, on in-memory storage, with a
// fake clock and an entity for the caller.
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	return newEnvOn(t, &logical.InmemStorage{}, &fakeClock{now: testStart})
}

func newEnvOn(t testing.TB, s logical.Storage, clock *fakeClock) *testEnv {
	t.Helper()
	logs := &bytes.Buffer{}
	ent := &logical.Entity{ID: "entity-1234", Name: "payments-api", Metadata: map[string]string{"team": "payments"}}
	conf := logical.TestBackendConfig()
	conf.StorageView = s
	conf.System = &logical.StaticSystemView{
		DefaultLeaseTTLVal: time.Hour,
		MaxLeaseTTLVal:     24 * time.Hour,
		EntityVal:          ent,
	}
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Trace, JSONFormat: true})
	b := newBackend(clock)
	b.keys = storageKeySource(t, s)
	b.wrapKeys = testWrapKeys
	if err := b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	b.logger = conf.Logger
	return &testEnv{t: t, b: b, storage: s, clock: clock, logs: logs, entity: ent}
}

// twoNodes builds an active node and a standby on one storage and one clock.
func twoNodes(t *testing.T) (active, standby *testEnv) {
	s := &logical.InmemStorage{}
	clock := &fakeClock{now: testStart}
	return newEnvOn(t, s, clock), newEnvOn(t, s, clock)
}

// restart builds a new backend on the same storage, as a Vault restart or a
// failover to another node would.
func (e *testEnv) restart() *testEnv {
	e.t.Helper()
	n := newEnvOn(e.t, e.storage, e.clock)
	return n
}

func (e *testEnv) do(op logical.Operation, path string, data map[string]any) (*logical.Response, error) {
	req := &logical.Request{
		Operation:  op,
		Path:       path,
		Data:       data,
		Storage:    e.storage,
		MountPoint: "jwt/",
		EntityID:   e.entity.ID,
		Connection: &logical.Connection{RemoteAddr: "127.0.0.1"},
	}
	if op == logical.CreateOperation || op == logical.UpdateOperation {
		// Vault decides create versus update with the path's ExistenceCheck.
		found, exists, err := e.b.HandleExistenceCheck(context.Background(), req)
		if err != nil {
			return nil, err
		}
		if found {
			if exists {
				req.Operation = logical.UpdateOperation
			} else {
				req.Operation = logical.CreateOperation
			}
		}
	}
	return e.b.HandleRequest(context.Background(), req)
}

func (e *testEnv) write(path string, data map[string]any) (*logical.Response, error) {
	return e.do(logical.UpdateOperation, path, data)
}

// mustWrite writes and fails the test on any error response.
func (e *testEnv) mustWrite(path string, data map[string]any) *logical.Response {
	e.t.Helper()
	resp, err := e.write(path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		e.t.Fatalf("write %s %v: err=%v resp=%v", path, data, err, respErr(resp))
	}
	return resp
}

func (e *testEnv) read(path string) *logical.Response {
	e.t.Helper()
	resp, err := e.do(logical.ReadOperation, path, nil)
	if err != nil {
		e.t.Fatalf("read %s: %v", path, err)
	}
	return resp
}

func respErr(r *logical.Response) string {
	if r == nil {
		return "<nil>"
	}
	if r.IsError() {
		return r.Error().Error()
	}
	return fmt.Sprint(r.Data)
}

// expect400 asserts a 400 whose message contains every fragment.
func expect400(t testing.TB, resp *logical.Response, err error, fragments ...string) {
	t.Helper()
	if err != logical.ErrInvalidRequest && !(err == nil && resp != nil && resp.IsError()) {
		t.Fatalf("want a 400, got err=%v resp=%s", err, respErr(resp))
	}
	if resp == nil || !resp.IsError() {
		t.Fatalf("want an error response, got %s", respErr(resp))
	}
	msg := resp.Error().Error()
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Fatalf("error %q does not mention %q", msg, f)
		}
	}
}

// dump returns every storage entry, to compare storage before and after.
func dump(t testing.TB, s logical.Storage) map[string]string {
	t.Helper()
	out := map[string]string{}
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := s.List(context.Background(), prefix)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
				continue
			}
			e, err := s.Get(context.Background(), prefix+k)
			if err != nil {
				t.Fatal(err)
			}
			out[prefix+k] = string(e.Value)
		}
	}
	walk("")
	return out
}

func sameStorage(t testing.TB, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("storage changed: %d entries before, %d after", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Fatalf("storage entry %s changed", k)
		}
	}
}

// setupRing configures the issuer and a ring with short periods, and forces
// its first key active.
func (e *testEnv) setupRing(name, alg string, extra map[string]any) {
	e.t.Helper()
	if e.b.config == nil || e.read("config").Data["issuer"] == "" {
		e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 60})
	}
	data := map[string]any{"algorithm": alg, "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"}
	for k, v := range extra {
		data[k] = v
	}
	e.mustWrite("keys/"+name, data)
	e.mustWrite("keys/"+name+"/rotate", map[string]any{"force": true})
}

func (e *testEnv) ring(name string) *ringEntry {
	e.t.Helper()
	r, err := readRing(context.Background(), e.storage, name)
	if err != nil || r == nil {
		e.t.Fatalf("ring %s: %v", name, err)
	}
	return r
}

func (e *testEnv) jwks(path string) (int, []byte, map[string]any) {
	e.t.Helper()
	resp := e.read(path)
	if resp == nil {
		return 404, nil, nil
	}
	return resp.Data[logical.HTTPStatusCode].(int), resp.Data[logical.HTTPRawBody].([]byte), resp.Data
}

// errText is err's message, or "" for no error: for tests that check what
// a refusal says.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// fataler is what kidsOf needs of a test: *testing.T, or rapid's *T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

func kidsOf(t fataler, body []byte) []string {
	t.Helper()
	if kids, ok := parsedKids.get(body); ok {
		return slices.Clone(kids)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS does not parse: %v: %s", err, body)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.KeyID)
	}
	sort.Strings(kids)
	parsedKids.put(body, kids)
	return slices.Clone(kids)
}

// parsedKids remembers the kids of JWKS documents go-jose has parsed (and
// so checked key by key): the model test reads the same few documents
// after every step, and parsing every key again dominated its time.
var parsedKids = &kidCache{m: map[string][]string{}}

type kidCache struct {
	mu sync.Mutex
	m  map[string][]string
}

func (c *kidCache) get(body []byte) ([]string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	kids, ok := c.m[string(body)]
	return kids, ok
}

func (c *kidCache) put(body []byte, kids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= 4096 {
		c.m = map[string][]string{}
	}
	c.m[string(body)] = kids
}

var allJOSEAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// verifyJose checks a token against a JWKS with go-jose v4, an independent
// verifier with an explicit algorithm list, and returns its claims.
func verifyJose(t testing.TB, token string, jwksBody []byte, at time.Time) (map[string]any, error) {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBody, &set); err != nil {
		return nil, err
	}
	tok, err := jwt.ParseSigned(token, allJOSEAlgs)
	if err != nil {
		return nil, err
	}
	if len(tok.Headers) != 1 {
		return nil, fmt.Errorf("want one signature")
	}
	keys := set.Key(tok.Headers[0].KeyID)
	if len(keys) != 1 {
		return nil, fmt.Errorf("kid %s: %d keys in the JWKS", tok.Headers[0].KeyID, len(keys))
	}
	if keys[0].Algorithm != tok.Headers[0].Algorithm {
		return nil, fmt.Errorf("token alg %s, JWK alg %s", tok.Headers[0].Algorithm, keys[0].Algorithm)
	}
	var std jwt.Claims
	out := map[string]any{}
	if err := tok.Claims(keys[0].Key, &std, &out); err != nil {
		return nil, err
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Time: at}, 0); err != nil {
		return nil, err
	}
	return out, nil
}

// verifyJWTv5 checks a token with golang-jwt v5, a second independent
// library.
func verifyJWTv5(t testing.TB, token string, jwksBody []byte, at time.Time, aud string) error {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(jwksBody, &set); err != nil {
		return err
	}
	p := jwtv5.NewParser(
		jwtv5.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}),
		jwtv5.WithTimeFunc(func() time.Time { return at }),
		jwtv5.WithAudience(aud),
		jwtv5.WithIssuedAt(),
		jwtv5.WithExpirationRequired(),
	)
	_, err := p.Parse(token, func(tok *jwtv5.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		keys := set.Key(kid)
		if len(keys) != 1 {
			return nil, fmt.Errorf("kid %q not in the JWKS", kid)
		}
		return keys[0].Key, nil
	})
	return err
}
