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

// crashScenario is one operation the atomicity test interrupts. prep runs
// before the token is signed and the crash is armed (time passing, so the
// token is still valid when it is checked); run is the operation.
// revokesSigner says the operation revokes the key that signed the token:
// once that revocation is stored the token must stop verifying, and until
// then it must verify like every other.
type crashScenario struct {
	prep          func(e *testEnv)
	run           func(e *testEnv)
	revokesSigner bool
}

// Invariant 10 (atomicity): a crash between any two storage writes loses no
// key and never yields two active keys. Each scenario runs once to count its
// writes, then once per write with a crash there; after each crash a fresh
// backend (a restarted Vault) on the surviving storage must find a
// consistent ring, sign, and clean up with one maintenance pass, and the
// token signed just before the operation must still verify (invariant 4),
// unless the operation revoked its key and the revocation was stored
// (invariant 6), when it must not.
func TestInvariantAtomicityCrashBetweenWrites(t *testing.T) {
	t.Parallel()
	scenarios := map[string]crashScenario{
		"create": {run: func(e *testEnv) {
			e.write("keys/c", map[string]any{"algorithm": "ES256", "rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
		}},
		"rotate":         {run: func(e *testEnv) { e.write("keys/k/rotate", nil) }},
		"rotate-force":   {run: func(e *testEnv) { e.write("keys/k/rotate", map[string]any{"force": true}) }},
		"revoke-active":  {run: func(e *testEnv) { e.write("keys/k/rotate", map[string]any{"revoke_active": true}) }, revokesSigner: true},
		"revoke-pending": {run: func(e *testEnv) { e.write("keys/k/revoke", map[string]any{"kid": e.ring("k").Keys[1].KID}) }},
		"rollback": {
			prep: func(e *testEnv) { e.clock.Advance(11 * time.Minute) },
			run:  func(e *testEnv) { e.write("keys/k/rollback", nil) },
		},
		"maintenance": {
			prep: func(e *testEnv) { e.clock.Advance(47 * time.Minute) },
			run:  func(e *testEnv) { _ = e.maintain() },
		},
		"algorithm-change": {run: func(e *testEnv) { e.write("keys/k", map[string]any{"algorithm": "EdDSA"}) }},
		"delete": {run: func(e *testEnv) {
			e.write("keys/x", nil)
			e.do(logical.DeleteOperation, "keys/x", map[string]any{"force": true})
		}},
	}
	for name, sc := range scenarios {
		t.Run(name, func(t *testing.T) {
			base := func() (*faultStorage, *testEnv) {
				fs := &faultStorage{Storage: &logical.InmemStorage{}}
				e := newEnvOn(t, fs, &fakeClock{now: testStart})
				e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
				e.mustWrite("keys/x", map[string]any{"algorithm": "ES256"})
				e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "1m", "max_ttl": "5m"})
				if sc.prep != nil {
					sc.prep(e)
				}
				return fs, e
			}
			// Count the scenario's writes.
			fs, e := base()
			start := fs.writes
			sc.run(e)
			total := fs.writes - start
			if total == 0 {
				t.Fatal("scenario made no writes")
			}
			revokedSeen := false
			for crashAt := 1; crashAt <= total; crashAt++ {
				fs, e := base()
				resp := e.mustWrite("sign/r", nil)
				kid, token := resp.Data["kid"].(string), resp.Data["token"].(string)
				fs.failAt = fs.writes + crashAt
				sc.run(e)
				fs.failAt = 0

				after := e.restart()
				when := fmt.Sprintf("crash at write %d of %d", crashAt, total)
				checkConsistent(t, after, when)
				if err := after.maintain(); err != nil {
					t.Fatalf("%s: maintenance after restart: %v", when, err)
				}
				checkConsistent(t, after, when+", after maintenance")
				// No time passed since the token was signed: it is valid,
				// and only a stored revocation of its own key may stop it
				// verifying.
				revoked := false
				for _, k := range after.ring("k").Keys {
					revoked = revoked || (k.KID == kid && k.revoked())
				}
				_, body, _ := after.jwks("jwks")
				_, err := verifyJose(t, token, body, after.clock.Now())
				switch {
				case revoked && !sc.revokesSigner:
					t.Fatalf("%s: the key %s that signed the token is revoked, and %s revokes no signing key", when, kid, name)
				case revoked && err == nil:
					t.Fatalf("%s: the token of %s still verifies after its key was revoked", when, kid)
				case !revoked && err != nil:
					t.Fatalf("%s: the token of %s no longer verifies: %v", when, kid, err)
				}
				revokedSeen = revokedSeen || revoked
			}
			// The crash points cover both sides of the revocation's write.
			if sc.revokesSigner && !revokedSeen {
				t.Fatalf("%s never stored the revocation of the signing key in %d crash points", name, total)
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
