package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Benchmarks, run by `make bench`. None of them asserts a duration: speed is
// measured here and compared in BENCHMARKS.md, never a pass/fail bound.

var benchAlgs = []struct {
	alg  string
	bits int
}{{"ES256", 0}, {"EdDSA", 0}, {"RS256", 2048}, {"PS256", 2048}, {"ES384", 0}}

// benchEnv sets up a ring and a role on the benchmark itself: a failed
// set-up step fails the benchmark (b.Fatal), so `make test`, which runs every
// benchmark once, catches a broken set-up.
func benchEnv(b *testing.B, alg string, bits int) *testEnv {
	b.Helper()
	e := newEnvOn(b, &logical.InmemStorage{}, &fakeClock{now: testStart})
	extra := map[string]any{}
	if bits != 0 {
		extra["rsa_bits"] = bits
	}
	e.setupRing("k", alg, extra)
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "allowed_claims": "scope"})
	return e
}

// BenchmarkSign signs through HandleRequest, the route of a real request
// minus Vault's own HTTP and plugin hop.
func BenchmarkSign(b *testing.B) {
	for _, a := range benchAlgs {
		b.Run(a.alg, func(b *testing.B) {
			e := benchEnv(b, a.alg, a.bits)
			req := func() *logical.Request {
				return &logical.Request{Operation: logical.UpdateOperation, Path: "sign/r", Storage: e.storage, EntityID: e.entity.ID,
					Data: map[string]any{"claims": map[string]any{"scope": "read"}}, MountPoint: "jwt/"}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := e.b.HandleRequest(context.Background(), req())
				if err != nil || resp.IsError() {
					b.Fatal(err, respErr(resp))
				}
			}
		})
	}
}

// BenchmarkRawJOSE signs the same claims with go-jose and the same key: the
// in-process floor BenchmarkSign is compared against.
func BenchmarkRawJOSE(b *testing.B) {
	for _, a := range benchAlgs {
		b.Run(a.alg, func(b *testing.B) {
			g, err := generateKey(a.alg, max(a.bits, 2048))
			if err != nil {
				b.Fatal(err)
			}
			signer, err := newJOSESigner(g.Private, g.KID, a.alg, "JWT")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				now := time.Now().Unix()
				payload, _ := json.Marshal(map[string]any{"iss": "https://i.example/v1/jwt", "sub": "entity-1234", "aud": "api", "iat": now, "nbf": now, "exp": now + 900, "jti": "0123456789abcdefghijkl", "scope": "read"})
				obj, err := signer.Sign(payload)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := obj.CompactSerialize(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignBatch100(b *testing.B) {
	e := benchEnv(b, "ES256", 0)
	items := make([]any, 100)
	for i := range items {
		items[i] = map[string]any{"claims": map[string]any{"scope": "read"}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "sign/r", Storage: e.storage, EntityID: e.entity.ID, Data: map[string]any{"batch_input": items}, MountPoint: "jwt/"})
		if err != nil || resp.IsError() {
			b.Fatal(err, respErr(resp))
		}
		// A batch answers 200 with each item's error inside: every item
		// must have its token, or the benchmark measures refusals.
		for j, r := range resp.Data["batch_results"].([]map[string]any) {
			if r["token"] == nil {
				b.Fatalf("batch item %d: %v", j, r)
			}
		}
	}
	b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "tokens/s")
}

func BenchmarkJWKS(b *testing.B) {
	e := benchEnv(b, "RS256", 2048)
	first, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks", Storage: e.storage})
	if err != nil || first == nil || len(first.Headers["ETag"]) != 1 {
		b.Fatalf("first JWKS read: %v %s", err, respErr(first))
	}
	etag := first.Headers["ETag"][0]
	for _, tc := range []struct {
		name    string
		headers map[string][]string
		status  int
	}{{"200", nil, 200}, {"304", map[string][]string{"If-None-Match": {etag}}, 304}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks", Storage: e.storage, Headers: tc.headers, Connection: &logical.Connection{RemoteAddr: "192.0.2.1:1"}})
				if err != nil || resp.Data[logical.HTTPStatusCode] != tc.status {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchRings is a backend on storage holding n copies of one EdDSA ring
// (with the ring settings given), written straight to storage: the
// mount's 50 KiB JWKS bound would refuse this many through the API.
func benchRings(b *testing.B, n int, settings map[string]any) *testEnv {
	b.Helper()
	s := &logical.InmemStorage{}
	clock := &fakeClock{now: testStart}
	proto := newEnvOn(b, s, clock)
	proto.setupRing("proto", "EdDSA", settings)
	r := proto.ring("proto")
	for i := 0; i < n; i++ {
		c := r.clone()
		c.Name = fmt.Sprintf("ring-%05d", i)
		for j := range c.Keys {
			c.Keys[j].HasPrivate = false // no private halves to sweep
		}
		if err := putJSON(context.Background(), s, ringPrefix+c.Name, c); err != nil {
			b.Fatal(err)
		}
	}
	return newEnvOn(b, s, clock)
}

// benchPasses times maintenance passes over e after a first, untimed one
// (which loads the rings and sweeps them).
func benchPasses(b *testing.B, e *testEnv) {
	b.Helper()
	if err := e.maintain(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := e.maintain(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMaintenance measures one maintenance pass with nothing to do over
// many rings (benchRings).
func BenchmarkMaintenance(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("rings=%d", n), func(b *testing.B) {
			benchPasses(b, benchRings(b, n, nil))
		})
	}
}

// withBenchPublishers configures n publishers on in-memory stores, the
// last of them failing (when n > 1), and starts the upload loop as Vault
// would, so sign, JWKS and maintenance run beside it. Compared with n = 0
// in BENCHMARKS.md.
func withBenchPublishers(b *testing.B, e *testEnv, n int) {
	b.Helper()
	if n == 0 {
		return
	}
	stores := withStores(e)
	for i := range n {
		e.mustWrite(fmt.Sprintf("publishers/p%d", i), davPublisher(map[string]any{"url": fmt.Sprintf("https://dav%d.example.com/", i), "required": i == 0}))
	}
	e.publishPass()
	if n > 1 {
		stores[fmt.Sprintf("https://dav%d.example.com/", n-1)].set(reasonServer, false)
	}
	e.b.startPublishing(e.storage)
	b.Cleanup(e.b.stopPublishing)
}

// BenchmarkWithPublishers: signing, JWKS reads and a maintenance pass over
// 1,000 rings, with no publisher and with four (one failing).
func BenchmarkWithPublishers(b *testing.B) {
	for _, n := range []int{0, 4} {
		b.Run(fmt.Sprintf("sign/publishers=%d", n), func(b *testing.B) {
			e := benchEnv(b, "ES256", 0)
			withBenchPublishers(b, e, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "sign/r", Storage: e.storage, EntityID: e.entity.ID,
					Data: map[string]any{"claims": map[string]any{"scope": "read"}}, MountPoint: "jwt/"})
				if err != nil || resp.IsError() {
					b.Fatal(err, respErr(resp))
				}
			}
		})
		b.Run(fmt.Sprintf("jwks/publishers=%d", n), func(b *testing.B) {
			e := benchEnv(b, "ES256", 0)
			withBenchPublishers(b, e, n)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := e.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "jwks", Storage: e.storage, Connection: &logical.Connection{RemoteAddr: "192.0.2.1:1"}})
				if err != nil || resp.Data[logical.HTTPStatusCode] != 200 {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("maintenance-1000-rings/publishers=%d", n), func(b *testing.B) {
			e := benchRings(b, 1000, map[string]any{"max_activation_delay": "30m"})
			withBenchPublishers(b, e, n)
			benchPasses(b, e)
		})
	}
}
