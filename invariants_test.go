package jwtrotor

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/vault/sdk/logical"
)

// One test per invariant of docs/invariants.md; each drives the lifecycle through the
// API on an injected clock and fails if its invariant breaks.

func (e *testEnv) maintain() error {
	return e.b.periodic(context.Background(), &logical.Request{Storage: e.storage, Operation: logical.RollbackOperation})
}

// simulate advances the clock by step until d has passed, running
// maintenance every tick (0: never) and calling check at every step.
func (e *testEnv) simulate(d, step, tick time.Duration, check func(now time.Time)) {
	e.t.Helper()
	end := e.clock.Now().Add(d)
	lastTick := e.clock.Now()
	for e.clock.Now().Before(end) {
		e.clock.Advance(step)
		if tick > 0 && e.clock.Now().Sub(lastTick) >= tick {
			if err := e.maintain(); err != nil {
				e.t.Fatalf("maintenance: %v", err)
			}
			lastTick = e.clock.Now()
		}
		check(e.clock.Now())
	}
}

// Invariant 1 (lead): a key signs only after it has been in the JWKS for
// publish_lead, and the JWKS always holds the active and the next pending key.
func TestInvariantLead(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
	resp := e.mustWrite("keys/k", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "20m", "verification_ttl": "2h"})
	if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "publish_lead") {
		t.Fatalf("creating a ring should say when its first key signs: %v", resp.Warnings)
	}
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api"})
	// The first key is pending for the lead: no signing yet.
	r, err := e.write("sign/r", nil)
	expect400(t, r, err, "no active key", "force=true")

	firstSeen := map[string]time.Time{}
	_, body0, _ := e.jwks("jwks")
	for _, k := range kidsOf(t, body0) {
		firstSeen[k] = e.clock.Now()
	}
	signed := 0
	e.simulate(3*24*time.Hour, 30*time.Second, time.Minute, func(now time.Time) {
		_, body, _ := e.jwks("jwks")
		kids := kidsOf(t, body)
		for _, k := range kids {
			if _, ok := firstSeen[k]; !ok {
				firstSeen[k] = now
			}
		}
		ring := e.ring("k")
		a := activeIndex(ring.Keys, now.Unix())
		if a < 0 {
			if now.Sub(testStart) < 20*time.Minute {
				return
			}
			t.Fatalf("%s: no active key", now)
		}
		p := liveAfter(ring.Keys, a)
		if p < 0 || !slices.Contains(kids, ring.Keys[a].KID) || !slices.Contains(kids, ring.Keys[p].KID) {
			t.Fatalf("%s: the JWKS %v lacks the active or the next pending key", now, kids)
		}
		// Maintenance stocks keys at least lead + two ticks ahead (checked
		// up to 30s after the last pass, hence the 90s).
		if last := ring.Keys[lastLive(ring.Keys)]; last.ActivateAt <= now.Unix()+20*60+90 {
			t.Fatalf("%s: the last stocked key activates at %s, less than lead + two ticks ahead", now, time.Unix(last.ActivateAt, 0))
		}
		resp := e.mustWrite("sign/r", nil)
		kid := resp.Data["kid"].(string)
		signed++
		if seen := firstSeen[kid]; now.Sub(seen) < 20*time.Minute {
			t.Fatalf("%s: key %s signs %s after it was first published, less than the lead", now, kid, now.Sub(seen))
		}
	})
	if signed == 0 || len(firstSeen) < 70 {
		t.Fatalf("signed %d tokens with %d keys", signed, len(firstSeen))
	}

	// force=true is the one exception, and says so.
	e.mustWrite("keys/fresh", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "publish_lead": "20m", "verification_ttl": "2h"})
	resp = e.mustWrite("keys/fresh/rotate", map[string]any{"force": true})
	if !strings.Contains(strings.Join(resp.Warnings, " "), "forced") {
		t.Fatalf("force must warn: %v", resp.Warnings)
	}
}

// Invariant 2 (no dry pipeline): a stalled maintenance or a storage error
// never leaves a ring without a published signing key.
func TestInvariantNoDryPipeline(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "20m"})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "1m", "max_ttl": "5m"})
	// Maintenance stalls for two days (sealed, crashed, or failing).
	var last string
	e.simulate(48*time.Hour, 45*time.Second, 0, func(now time.Time) {
		resp := e.mustWrite("sign/r", nil)
		_, body, _ := e.jwks("jwks")
		if _, err := verifyJose(t, resp.Data["token"].(string), body, now); err != nil {
			t.Fatalf("%s: token does not verify against the JWKS: %v", now, err)
		}
		last = resp.Data["kid"].(string)
	})
	// The last stocked key kept signing and its retirement follows its
	// successor's real activation, which obeys the lead from now.
	now := e.clock.Now().Unix()
	if err := e.maintain(); err != nil {
		t.Fatal(err)
	}
	ring := e.ring("k")
	a := activeIndex(ring.Keys, now)
	if ring.Keys[a].KID != last {
		t.Fatalf("active key changed during maintenance: %s -> %s", last, ring.Keys[a].KID)
	}
	next := liveAfter(ring.Keys, a)
	if next < 0 || ring.Keys[next].ActivateAt < now+300 || ring.Keys[a].RetireAt != ring.Keys[next].ActivateAt {
		t.Fatalf("after the stall the next key must activate a full lead from now: %+v", ring.Keys)
	}
	if ring.Keys[a].RemoveAt != ring.Keys[a].RetireAt+1200 {
		t.Fatalf("remove_at must follow the real retirement: %+v", ring.Keys[a])
	}

	// Storage refuses writes: maintenance fails, signing goes on.
	failing := &faultStorage{Storage: e.storage, failPuts: true}
	e2 := newEnvOn(t, failing, e.clock)
	for i := 0; i < 60; i++ {
		e2.clock.Advance(time.Minute)
		if err := e2.maintain(); err == nil && failing.putAttempts > 0 {
			t.Fatal("maintenance reported success while storage refused its writes")
		}
		e2.mustWrite("sign/r", nil)
	}
}

// Invariant 3 (overlap): exp <= remove_at - 60s for every token, and a role
// whose max_ttl + 60s exceeds its ring's verification_ttl is refused, whether
// the role or the ring is written second.
func TestInvariantOverlap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "11m"})
	r, err := e.write("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "5m", "max_ttl": "10m1s"})
	expect400(t, r, err, "max_ttl", "verification_ttl", "660")
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "5m", "max_ttl": "10m"})
	r, err = e.write("keys/k", map[string]any{"verification_ttl": "10m59s"})
	expect400(t, r, err, "verification_ttl", `role "r"`, "660")

	e.simulate(6*time.Hour, 20*time.Second, time.Minute, func(now time.Time) {
		resp := e.mustWrite("sign/r", map[string]any{"ttl": "10m"})
		ring := e.ring("k")
		for _, k := range ring.Keys {
			if k.KID == resp.Data["kid"] && k.RemoveAt != 0 && resp.Data["expires_at"].(int64) > k.RemoveAt-60 {
				t.Fatalf("token expires at %d, its key leaves the JWKS at %d", resp.Data["expires_at"], k.RemoveAt)
			}
		}
		// Rotations of every kind keep it too.
		if now.Unix()%3600 < 20 {
			e.mustWrite("keys/k/rotate", map[string]any{"force": true})
		}
	})
}

// Invariant 4 (exactness): signing and the JWKS follow the timestamps to
// the second, whatever the maintenance tick.
func TestInvariantExactness(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 5})
	e.mustWrite("keys/k", map[string]any{"algorithm": "EdDSA", "rotation_period": "10s", "publish_lead": "10s", "verification_ttl": "70s"})
	e.mustWrite("keys/k/rotate", map[string]any{"force": true})
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "5s", "max_ttl": "10s"})
	activations, removals := 0, 0
	e.simulate(10*time.Minute, time.Second, time.Minute, func(now time.Time) {
		ring := e.ring("k")
		t0 := now.Unix()
		kid := e.mustWrite("sign/r", nil).Data["kid"].(string)
		_, body, _ := e.jwks("jwks")
		kids := kidsOf(t, body)
		for _, k := range ring.Keys {
			if k.ActivateAt == t0 && !k.revoked() {
				activations++
				if kid != k.KID {
					t.Fatalf("%d: %s was due to activate this second, but %s signed", t0, k.KID, kid)
				}
			}
			if k.RemoveAt == t0 {
				removals++
				if slices.Contains(kids, k.KID) {
					t.Fatalf("%d: %s was due to leave the JWKS this second", t0, k.KID)
				}
			}
			if k.RemoveAt == t0+1 && !slices.Contains(kids, k.KID) {
				t.Fatalf("%d: %s left the JWKS a second early", t0, k.KID)
			}
		}
	})
	if activations < 50 || removals < 40 {
		t.Fatalf("observed %d activations and %d removals", activations, removals)
	}
}

// Invariant 5 (monotonic): a removed or revoked kid never comes back, even
// if the clock steps backwards, across restarts too.
func TestInvariantMonotonic(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "15m"})
	e.mustWrite("roles/r0", map[string]any{"key": "k", "audiences": "api", "max_ttl": "5m", "ttl": "1m"})
	first := e.ring("k").Keys[0].KID
	e.simulate(40*time.Minute, 30*time.Second, time.Minute, func(time.Time) {})
	_, body, _ := e.jwks("jwks")
	if slices.Contains(kidsOf(t, body), first) {
		t.Fatalf("%s should have been removed by now", first)
	}
	revoked := e.ring("k").Keys[0].KID
	e.mustWrite("keys/k/revoke", map[string]any{"kid": revoked})

	// The wall clock steps back an hour, in this process and after a restart.
	e.clock.Advance(-time.Hour)
	for _, env := range []*testEnv{e, e.restart()} {
		_, body, _ = env.jwks("jwks")
		kids := kidsOf(t, body)
		if slices.Contains(kids, first) || slices.Contains(kids, revoked) {
			t.Fatalf("a removed or revoked kid came back after the clock stepped back: %v", kids)
		}
		if err := env.maintain(); err != nil {
			t.Fatal(err)
		}
		resp := env.mustWrite("sign/r0", nil)
		if resp.Data["kid"] == first || resp.Data["kid"] == revoked {
			t.Fatal("a removed or revoked key signed")
		}
		// Tokens carry Vault's clock; only key states hold to the high-water.
		if resp.Data["issued_at"].(int64) != e.clock.Now().Unix() {
			t.Fatal("iat is not Vault's clock")
		}
	}
}

// Invariant 6 (atomicity) lives in crash_test.go.

// Invariant 7 (bounded): the period bound, the JWKS size bound, and private
// halves deleted when keys leave the JWKS or retire.
func TestInvariantBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://i.example/v1/jwt", "jwks_max_age": 60})
	r, err := e.write("keys/k", map[string]any{"rotation_period": "1h", "publish_lead": "2h", "verification_ttl": "9h1s"})
	expect400(t, r, err, "rotation_period", "above 10", "at least")
	if _, ok := dump(t, e.storage)["rings/k"]; ok {
		t.Fatal("a refused ring was stored")
	}
	// RSA-4096 rings fill the 50 KiB JWKS bound.
	created := 0
	var refusal *logical.Response
	for i := 0; i < 20; i++ {
		resp, err := e.write("keys/big"+string(rune('a'+i)), map[string]any{"algorithm": "RS256", "rsa_bits": 4096, "rotation_period": "1h", "publish_lead": "1h", "verification_ttl": "8h"})
		if err != nil {
			refusal = resp
			break
		}
		created++
	}
	if refusal == nil || !strings.Contains(refusal.Error().Error(), "51200") {
		t.Fatalf("the JWKS bound was not enforced after %d rings: %v", created, respErr(refusal))
	}
	_, body, _ := e.jwks("jwks")
	if len(body) > maxJWKSBytes {
		t.Fatalf("JWKS is %d bytes", len(body))
	}

	// Private halves: kept for pending, active and the rollback candidate only.
	e2 := newEnv(t)
	e2.setupRing("k", "ES256", map[string]any{"rotation_period": "10m", "publish_lead": "5m", "verification_ttl": "30m"})
	e2.simulate(3*time.Hour, time.Minute, time.Minute, func(now time.Time) {
		ring := e2.ring("k")
		stored := dump(t, e2.storage)
		for i, k := range ring.Keys {
			_, has := stored[privatePath("k", k.KID)]
			want := needsPrivate(ring.Keys, i, ring.schedule(), now.Unix())
			if has != want && !(has && !want && now.Unix()-k.RetireAt < 60) {
				t.Fatalf("%s: key %s (%s) private half stored=%v, needed=%v", now, k.KID, k.state(now.Unix()), has, want)
			}
		}
		for path := range stored {
			if strings.HasPrefix(path, privatePrefix) {
				kid := path[strings.LastIndex(path, "/")+1:]
				found := false
				for _, k := range ring.Keys {
					found = found || k.KID == kid
				}
				if !found {
					t.Fatalf("private half %s outlived its key", path)
				}
			}
		}
	})
}

// Invariant 8 (secrecy): no response or log line carries private material;
// key storage is declared seal-wrapped.
func TestInvariantSecrecy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var out []string
	collect := func(resp *logical.Response) {
		b, _ := json.Marshal(resp)
		out = append(out, string(b))
		if resp != nil {
			if raw, ok := resp.Data[logical.HTTPRawBody].([]byte); ok {
				out = append(out, string(raw))
			}
		}
	}
	for _, alg := range []string{"RS256", "PS256", "ES384", "EdDSA"} {
		name := strings.ToLower(alg)
		e.setupRing(name, alg, nil)
		e.mustWrite("roles/"+name, map[string]any{"key": name, "audiences": "api"})
		collect(e.mustWrite("sign/"+name, nil))
		collect(e.read("keys/" + name))
		collect(e.read("jwks/" + name))
		collect(e.mustWrite("keys/"+name+"/rotate", map[string]any{"force": true}))
	}
	collect(e.read("jwks"))
	collect(e.read(".well-known/jwks.json"))
	collect(e.read(".well-known/openid-configuration"))
	collect(e.read("config"))
	e.mustWrite("publishers/aws", s3Publisher(map[string]any{"session_token": testSessionToken}))
	e.mustWrite("publishers/dav", davPublisher(nil))
	collect(e.read("publishers/aws"))
	collect(e.read("publishers/dav"))
	_ = e.maintain()
	out = append(out, e.logs.String())

	// Every stored private half, in the forms a leak could take.
	var secrets []string
	for path, v := range dump(t, e.storage) {
		if !strings.HasPrefix(path, privatePrefix) {
			continue
		}
		var p privateEntry
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, base64.StdEncoding.EncodeToString(p.PKCS8)[20:60])
		priv, err := parsePrivateAs(p.PKCS8, p.KID, p.thumbprint(), p.Alg)
		if err != nil {
			t.Fatal(err)
		}
		jwk, _ := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: p.KID})
		var fields map[string]any
		_ = json.Unmarshal(jwk, &fields)
		secrets = append(secrets, fields["d"].(string))
	}
	if len(secrets) < 8 {
		t.Fatalf("found only %d secrets to look for", len(secrets))
	}
	secrets = append(secrets, testCredentials...)
	all := strings.Join(out, "\n")
	for _, s := range secrets {
		if strings.Contains(all, s) {
			t.Fatal("private key material appears in a response or log")
		}
	}
	for _, marker := range []string{`"d":`, `"p":`, `"q":`, `"dp":`, `"dq":`, `"qi":`, "PRIVATE KEY"} {
		if strings.Contains(all, marker) {
			t.Fatalf("%s appears in a response or log", marker)
		}
	}
	// Private halves, the import wrapping key and publishers (with their
	// credentials) are declared for seal wrapping, and are stored nowhere
	// else.
	declared := e.b.SpecialPaths().SealWrapStorage
	if len(declared) != 3 || declared[0] != privatePrefix || declared[1] != wrappingPrefix || declared[2] != publisherPrefix {
		t.Fatalf("SealWrapStorage = %v", declared)
	}
	e.read("wrapping_key")
	for path, v := range dump(t, e.storage) {
		sealed := strings.HasPrefix(path, privatePrefix) || strings.HasPrefix(path, wrappingPrefix)
		if strings.Contains(v, `"pkcs8"`) != sealed {
			t.Fatalf("key material stored outside the seal-wrapped prefixes: %s", path)
		}
		if strings.Contains(v, testSecretKey) != (path == publisherPrefix+"aws") || strings.Contains(v, testDAVPassword) != (path == publisherPrefix+"dav") {
			t.Fatalf("a publisher credential is stored outside its publisher's entry: %s", path)
		}
	}
}

// Invariant 9 (kid): the kid is the RFC 7638 thumbprint, bound to one alg
// for life; an algorithm change makes new keys that obey the lead and leaves
// existing keys untouched.
func TestInvariantKidThumbprint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "RS256", nil)
	_, body, _ := e.jwks("jwks")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	for _, k := range set.Keys {
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		if base64.RawURLEncoding.EncodeToString(tp) != k.KeyID {
			t.Fatalf("kid %s is not the thumbprint", k.KeyID)
		}
		if k.Use != "sig" || k.Algorithm != "RS256" || !k.IsPublic() {
			t.Fatalf("key %s: use=%s alg=%s public=%v", k.KeyID, k.Use, k.Algorithm, k.IsPublic())
		}
	}
	before := e.ring("k")
	now := e.clock.Now().Unix()
	resp := e.mustWrite("keys/k", map[string]any{"algorithm": "ES256"})
	after := e.ring("k")
	for _, old := range before.Keys {
		found := false
		for _, k := range after.Keys {
			if k.KID == old.KID {
				found = true
				if k.Alg != old.Alg || k.PublishAt != old.PublishAt || k.ActivateAt != old.ActivateAt {
					t.Fatalf("existing key %s changed: %+v -> %+v", k.KID, old, k)
				}
			}
		}
		if !found {
			t.Fatalf("existing key %s vanished", old.KID)
		}
	}
	newKey := after.Keys[len(after.Keys)-1]
	if newKey.Alg != "ES256" || newKey.ActivateAt < now+after.PublishLead {
		t.Fatalf("new key %+v must be ES256 and activate a full lead from now", newKey)
	}
	if !strings.Contains(strings.Join(resp.Warnings, " "), "ES256") {
		t.Fatalf("warning should name the new algorithm: %v", resp.Warnings)
	}
	// Settings changes never rewrite existing timestamps.
	before = e.ring("k")
	e.mustWrite("keys/k", map[string]any{"rotation_period": "2h", "verification_ttl": "3h"})
	after = e.ring("k")
	for i := range before.Keys {
		if before.Keys[i].ActivateAt != after.Keys[i].ActivateAt || before.Keys[i].RemoveAt != after.Keys[i].RemoveAt {
			t.Fatalf("a settings change rewrote key %s", before.Keys[i].KID)
		}
	}
}

// Invariant 10 (versioned storage) lives in storage_test.go.

// Cross-object checks hold under concurrent writers: roles raising max_ttl
// and the ring lowering verification_ttl race, and no interleaving may
// leave a role whose max_ttl + 60s exceeds the ring's overlap. Every write
// is a 200 or a 400 that names its field; some of each kind succeed (the
// role's 10m and the ring's 60m fit whatever the other holds), and what is
// stored at the end is a value a successful write sent.
func TestCrossObjectChecksUnderConcurrency(t *testing.T) {
	t.Parallel()
	// Slow writes widen the window between a writer's check and its write.
	e := newEnvOn(t, &slowStorage{Storage: &logical.InmemStorage{}}, &fakeClock{now: testStart})
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	// Below every value the race writes, so the end state shows which won.
	e.mustWrite("roles/r", map[string]any{"key": "k", "audiences": "api", "ttl": "1m", "max_ttl": "5m"})
	type outcome struct {
		field string
		value int64
		resp  *logical.Response
		err   error
	}
	results := make(chan outcome, 100)
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(2)
		go func(i int) {
			defer wg.Done()
			v := int64(60 * (10 + i))
			resp, err := e.write("roles/r", map[string]any{"max_ttl": v})
			results <- outcome{"max_ttl", v, resp, err}
		}(i)
		go func(i int) {
			defer wg.Done()
			v := int64(660 + 60*(49-i))
			resp, err := e.write("keys/k", map[string]any{"verification_ttl": v})
			results <- outcome{"verification_ttl", v, resp, err}
		}(i)
	}
	wg.Wait()
	close(results)
	written := map[string]map[int64]bool{"max_ttl": {}, "verification_ttl": {}}
	refused := map[string]int{}
	for o := range results {
		switch {
		case o.err == nil && (o.resp == nil || !o.resp.IsError()):
			written[o.field][o.value] = true
		case o.err == logical.ErrInvalidRequest && o.resp != nil && strings.HasPrefix(o.resp.Error().Error(), o.field+":"):
			refused[o.field]++
		default:
			t.Fatalf("%s=%d: want a 200 or a 400 naming %s, got %v %s", o.field, o.value, o.field, o.err, respErr(o.resp))
		}
	}
	for _, f := range []string{"max_ttl", "verification_ttl"} {
		if len(written[f]) == 0 {
			t.Fatalf("no %s write succeeded (%d refused): the race never happened", f, refused[f])
		}
	}
	role := e.read("roles/r").Data
	ring := e.read("keys/k").Data
	maxTTL, vttl := role["max_ttl"].(int64), ring["verification_ttl"].(int64)
	if maxTTL+60 > vttl {
		t.Fatalf("role max_ttl %d + 60 exceeds ring verification_ttl %d", maxTTL, vttl)
	}
	if !written["max_ttl"][maxTTL] || !written["verification_ttl"][vttl] {
		t.Fatalf("stored max_ttl %d (sent by a successful write: %v) and verification_ttl %d (%v)",
			maxTTL, written["max_ttl"][maxTTL], vttl, written["verification_ttl"][vttl])
	}
	t.Logf("max_ttl: %d written, %d refused; verification_ttl: %d written, %d refused",
		len(written["max_ttl"]), refused["max_ttl"], len(written["verification_ttl"]), refused["verification_ttl"])
}

type slowStorage struct{ logical.Storage }

func (s *slowStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	time.Sleep(2 * time.Millisecond)
	return s.Storage.Put(ctx, e)
}

// Raising publish_lead rewrites no existing key; keys scheduled after it
// obey the new lead (invariants 1 and 9).
func TestRaisingLeadKeepsExistingKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", map[string]any{"rotation_period": "1h", "publish_lead": "10m", "verification_ttl": "2h"})
	before := e.ring("k")
	resp := e.mustWrite("keys/k", map[string]any{"publish_lead": "50m"})
	if !strings.Contains(strings.Join(resp.Warnings, " "), "publish_lead raised") {
		t.Fatalf("warnings %v", resp.Warnings)
	}
	after := e.ring("k")
	for i := range before.Keys {
		if before.Keys[i].ActivateAt != after.Keys[i].ActivateAt || before.Keys[i].PublishAt != after.Keys[i].PublishAt {
			t.Fatalf("raising the lead rewrote key %s", before.Keys[i].KID)
		}
	}
	e.simulate(6*time.Hour, time.Minute, time.Minute, func(now time.Time) {
		for _, k := range e.ring("k").Keys {
			if k.PublishAt > testStart.Unix() && k.ActivateAt < k.PublishAt+50*60 {
				t.Fatalf("key %s generated after the change activates %ds after publication", k.KID, k.ActivateAt-k.PublishAt)
			}
		}
	})
}
