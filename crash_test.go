package jwtrotor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// faultStorage wraps storage and fails writes on demand: every Put (failPuts),
// or every write from the failAt-th on (a crash: nothing after that point
// reaches storage).
type faultStorage struct {
	logical.Storage
	mu          sync.Mutex
	failPuts    bool
	failAt      int
	writes      int
	putAttempts int
}

var errInjected = errors.New("injected storage failure")

func (f *faultStorage) write() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	if f.failPuts || (f.failAt > 0 && f.writes >= f.failAt) {
		return errInjected
	}
	return nil
}

func (f *faultStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	f.mu.Lock()
	f.putAttempts++
	f.mu.Unlock()
	if err := f.write(); err != nil {
		return err
	}
	return f.Storage.Put(ctx, e)
}

func (f *faultStorage) Delete(ctx context.Context, k string) error {
	if err := f.write(); err != nil {
		return err
	}
	return f.Storage.Delete(ctx, k)
}

// Invariant 6 (atomicity): a crash between any two storage writes loses no
// key and never yields two active keys. Each scenario runs once to count its
// writes, then once per write with a crash there; after each crash a fresh
// backend (a restarted Vault) on the surviving storage must find a
// consistent ring, sign, and clean up with one maintenance pass.
func TestInvariantAtomicityCrashBetweenWrites(t *testing.T) {
	scenarios := map[string]func(e *testEnv){
		"create": func(e *testEnv) {
			e.write("keys/c", map[string]any{"algorithm": "ES256", "rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
		},
		"rotate":         func(e *testEnv) { e.write("keys/k/rotate", nil) },
		"rotate-force":   func(e *testEnv) { e.write("keys/k/rotate", map[string]any{"force": true}) },
		"revoke-active":  func(e *testEnv) { e.write("keys/k/rotate", map[string]any{"revoke_active": true}) },
		"revoke-pending": func(e *testEnv) { e.write("keys/k/revoke", map[string]any{"kid": e.ring("k").Keys[1].KID}) },
		"rollback": func(e *testEnv) {
			e.clock.Advance(11 * time.Minute)
			e.write("keys/k/rollback", nil)
		},
		"maintenance": func(e *testEnv) {
			e.clock.Advance(47 * time.Minute)
			_ = e.maintain()
		},
		"algorithm-change": func(e *testEnv) { e.write("keys/k", map[string]any{"algorithm": "EdDSA"}) },
		"delete": func(e *testEnv) {
			e.write("keys/x", nil)
			e.do(logical.DeleteOperation, "keys/x", map[string]any{"force": true})
		},
	}
	for name, run := range scenarios {
		t.Run(name, func(t *testing.T) {
			// Count the scenario's writes.
			base := func() (*faultStorage, *testEnv) {
				fs := &faultStorage{Storage: &logical.InmemStorage{}}
				e := newEnvOn(t, fs, &fakeClock{now: testStart})
				e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
				e.mustWrite("keys/x", map[string]any{"algorithm": "ES256"})
				e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "1m", "max_ttl": "5m"})
				return fs, e
			}
			fs, e := base()
			start := fs.writes
			run(e)
			total := fs.writes - start
			if total == 0 {
				t.Fatal("scenario made no writes")
			}
			for crashAt := 1; crashAt <= total; crashAt++ {
				fs, e := base()
				tokens := map[string]string{}
				resp := e.mustWrite("sign/r", nil)
				tokens[resp.Data["kid"].(string)] = resp.Data["token"].(string)
				exp := time.Unix(resp.Data["expires_at"].(int64), 0)
				fs.failAt = fs.writes + crashAt
				run(e)
				fs.failAt = 0

				after := e.restart()
				checkConsistent(t, after, fmt.Sprintf("crash at write %d of %d", crashAt, total))
				if err := after.maintain(); err != nil {
					t.Fatalf("crash at write %d: maintenance after restart: %v", crashAt, err)
				}
				checkConsistent(t, after, fmt.Sprintf("crash at write %d of %d, after maintenance", crashAt, total))
				// Tokens issued before the crash still verify.
				_, body, _ := after.jwks("jwks")
				for kid, tok := range tokens {
					if !after.clock.Now().Before(exp) {
						continue // expired: nothing to keep verifying
					}
					if _, err := verifyJose(t, tok, body, after.clock.Now()); err != nil && !strings.Contains(name, "revoke") {
						t.Fatalf("crash at write %d: token of %s no longer verifies: %v", crashAt, kid, err)
					}
				}
			}
		})
	}
}

// checkConsistent asserts what a crash must never break: at most one active
// key now and at every future boundary, a signing key with its private half,
// and every stored ring passing checkRing.
func checkConsistent(t *testing.T, e *testEnv, when string) {
	t.Helper()
	stored := dump(t, e.storage)
	for path := range stored {
		if !strings.HasPrefix(path, ringPrefix) {
			continue
		}
		name := strings.TrimPrefix(path, ringPrefix)
		r := e.ring(name)
		now := e.clock.Now().Unix()
		if err := checkRing(r.Keys, r.schedule(), now); err != nil {
			t.Fatalf("%s: ring %s: %v", when, name, err)
		}
		for i, k := range r.Keys {
			if k.HasPrivate {
				if _, ok := stored[privatePath(name, k.KID)]; !ok {
					t.Fatalf("%s: ring %s claims the private half of %s but it is gone", when, name, k.KID)
				}
			}
			if k.state(now) == stateActive && !k.HasPrivate {
				t.Fatalf("%s: active key %s has no private half", when, k.KID)
			}
			_ = i
		}
		if name == "k" {
			if a := activeIndex(r.Keys, now); a < 0 {
				t.Fatalf("%s: ring k has no active key", when)
			}
			e.mustWrite("sign/r", nil)
		}
	}
}
