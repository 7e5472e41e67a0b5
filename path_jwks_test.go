package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

var cacheControlRE = regexp.MustCompile(`^public, max-age=(\d+), stale-if-error=(\d+)$`)

func parseCacheControl(t *testing.T, cc string) (int64, int64) {
	t.Helper()
	m := cacheControlRE.FindStringSubmatch(cc)
	if m == nil {
		t.Fatalf("Cache-Control %q", cc)
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	s, _ := strconv.ParseInt(m[2], 10, 64)
	return n, s
}

func (e *testEnv) get(path string, headers map[string][]string) *logical.Response {
	e.t.Helper()
	resp, err := e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: path, Storage: e.storage, Headers: headers,
		Connection: &logical.Connection{RemoteAddr: "192.0.2.7"},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// Cache-Control stays within 1..jwks_max_age, never past the next removal,
// with stale-if-error at most the lead, through every state of a ring.
func TestJWKSCacheControl(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 30})
	e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "2m", "publish_lead": "1m", "verification_ttl": "3m"})
	ages := map[int64]bool{}
	e.simulate(30*time.Minute, 7*time.Second, time.Minute, func(now time.Time) {
		resp := e.get("jwks", nil)
		if resp.Data[logical.HTTPStatusCode] != 200 || resp.Data[logical.HTTPContentType] != "application/jwk-set+json" {
			t.Fatalf("status/content type: %v", resp.Data)
		}
		n, stale := parseCacheControl(t, resp.Data[logical.HTTPCacheControlHeader].(string))
		ages[n] = true
		if n < 1 || n > 30 || stale > 60 {
			t.Fatalf("%s: max-age %d, stale-if-error %d", now, n, stale)
		}
		ring := e.ring("k")
		if next := nextRemoval(ring.Keys, now.Unix()); next != forever && now.Unix()+n > next && n > 1 {
			t.Fatalf("%s: max-age %d runs past the removal at %d", now, n, next)
		}
	})
	if len(ages) < 3 {
		t.Fatalf("max-age never varies (jitter or removal bound missing): %v", ages)
	}
}

// TestJWKSETagAnd304: the current ETag, strong, weak, in a list or *, gets
// a 304 with no body and the same ETag; another ETag gets the body; HEAD
// answers like GET; a rotation changes body and ETag.
func TestJWKSETagAnd304(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	resp := e.get("jwks", nil)
	etag := resp.Headers["ETag"][0]
	lm := resp.Headers["Last-Modified"][0]
	if etag == "" || lm == "" {
		t.Fatalf("headers %v", resp.Headers)
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		r := e.get("jwks", map[string][]string{"If-None-Match": {inm}})
		if r.Data[logical.HTTPStatusCode] != 304 || len(r.Data[logical.HTTPRawBody].([]byte)) != 0 || r.Data[logical.HTTPContentType] != "application/jwk-set+json" {
			t.Fatalf("If-None-Match %s: %v", inm, r.Data)
		}
		if r.Headers["ETag"][0] != etag {
			t.Fatal("304 without its ETag")
		}
	}
	r := e.get("jwks", map[string][]string{"If-None-Match": {`"stale"`}})
	if r.Data[logical.HTTPStatusCode] != 200 {
		t.Fatal("a stale ETag must get the body")
	}
	// HEAD answers like GET.
	h, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.HeaderOperation, Path: "jwks", Storage: e.storage})
	if err != nil || h.Data[logical.HTTPStatusCode] != 200 || h.Headers["ETag"][0] != etag {
		t.Fatalf("HEAD: %v %v", err, h)
	}
	// A rotation changes the body and the ETag; the same state on another
	// scope or node gives the same Last-Modified.
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	e.clock.Advance(time.Second)
	if e.get("jwks", nil).Headers["ETag"][0] == etag {
		t.Fatal("the ETag did not change with the key set")
	}
	other := e.restart()
	if other.get("jwks", nil).Headers["Last-Modified"][0] != e.get("jwks", nil).Headers["Last-Modified"][0] {
		t.Fatal("Last-Modified differs between nodes")
	}
	if other.get("jwks", nil).Headers["ETag"][0] != e.get("jwks", nil).Headers["ETag"][0] {
		t.Fatal("ETag differs between nodes")
	}
}

// TestJWKSScopesAndDiscovery: the mount's JWKS is the union of the rings'
// JWKS, which do not overlap; the well-known copy equals it; an unknown ring
// is a 404; discovery names the issuer, the JWKS and every algorithm.
func TestJWKSScopesAndDiscovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("a", "ES256", nil)
	e.setupRing("b", "EdDSA", nil)
	all := kidsOf(t, e.get("jwks", nil).Data[logical.HTTPRawBody].([]byte))
	wk := kidsOf(t, e.get(".well-known/jwks.json", nil).Data[logical.HTTPRawBody].([]byte))
	ka := kidsOf(t, e.get("jwks/a", nil).Data[logical.HTTPRawBody].([]byte))
	kb := kidsOf(t, e.get("jwks/b", nil).Data[logical.HTTPRawBody].([]byte))
	if fmt.Sprint(all) != fmt.Sprint(wk) || len(ka)+len(kb) != len(all) || len(ka) == 0 || len(kb) == 0 {
		t.Fatalf("all %v well-known %v a %v b %v", all, wk, ka, kb)
	}
	for _, k := range ka {
		if slices.Contains(kb, k) {
			t.Fatal("ring scopes overlap")
		}
	}
	if e.get("jwks/missing", nil) != nil {
		t.Fatal("an unknown ring must be a 404")
	}
	d := e.get(".well-known/openid-configuration", nil)
	var doc map[string]any
	if err := json.Unmarshal(d.Data[logical.HTTPRawBody].([]byte), &doc); err != nil {
		t.Fatal(err)
	}
	if doc["issuer"] != "https://vault.example.com/v1/jwt" || doc["jwks_uri"] != "https://vault.example.com/v1/jwt/jwks" {
		t.Fatalf("discovery %v", doc)
	}
	if fmt.Sprint(doc["id_token_signing_alg_values_supported"]) != "[ES256 EdDSA RS256]" {
		t.Fatalf("algs %v", doc["id_token_signing_alg_values_supported"])
	}
	// The claims every token carries, which no role or caller may set.
	if fmt.Sprint(doc["claims_supported"]) != "[iss sub aud exp nbf iat jti]" {
		t.Fatalf("claims_supported %v", doc["claims_supported"])
	}
	// Unauthenticated paths are exactly the documents.
	if fmt.Sprint(e.b.SpecialPaths().Unauthenticated) != "[jwks jwks/* .well-known/*]" {
		t.Fatalf("unauthenticated %v", e.b.SpecialPaths().Unauthenticated)
	}
}

// countingStorage counts reads, to show the JWKS is served from memory.
type countingStorage struct {
	logical.Storage
	mu    sync.Mutex
	reads int
}

func (c *countingStorage) Get(ctx context.Context, k string) (*logical.StorageEntry, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Storage.Get(ctx, k)
}

func (c *countingStorage) List(ctx context.Context, p string) ([]string, error) {
	c.mu.Lock()
	c.reads++
	c.mu.Unlock()
	return c.Storage.List(ctx, p)
}

// TestJWKSFloodReadsNoStorage: concurrent JWKS and discovery reads with
// unknown ETags are served from memory: 8000 of them read storage zero times.
func TestJWKSFloodReadsNoStorage(t *testing.T) {
	t.Parallel()
	cs := &countingStorage{Storage: &logical.InmemStorage{}}
	e := newEnvOn(t, cs, &fakeClock{now: testStart})
	e.setupRing("k", "RS256", nil)
	e.get("jwks", nil)
	cs.reads = 0
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				e.get("jwks", map[string][]string{"If-None-Match": {fmt.Sprintf(`"%d"`, i)}})
				e.get(".well-known/openid-configuration", nil)
			}
		}()
	}
	wg.Wait()
	if cs.reads != 0 {
		t.Fatalf("8000 fetches made %d storage reads", cs.reads)
	}
}
