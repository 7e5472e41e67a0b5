package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestSafetyRandomOperations runs random operations over HTTP against a
// single-node Raft Vault with the plugin, on two rings that rotate every 10
// and 20 seconds, and kills Vault with SIGKILL (and restarts and unseals
// it) at random moments in between. Every token is verified by go-jose
// against the JWKS Vault serves right after it is issued, and again shortly
// before it expires, unless its key was revoked on purpose. The
// operations: single and batch signing, scheduled, forced and revoking
// rotations, revocations of any key, rollbacks, settings changes within the
// rings' bounds, and JWKS fetches. It runs for RANDOM_DURATION (default
// 3m) and prints the operations it ran and the seed that reproduces their
// order.
func TestSafetyRandomOperations(t *testing.T) {
	t.Parallel()
	duration := 3 * time.Minute
	if v := os.Getenv("RANDOM_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("RANDOM_DURATION: %v", err)
		}
		duration = d
	}
	root := testserver.TempDir(t, "jwt-rotor-random-")
	node, sha := testserver.NewRaftNode(t, bins, root, "random-1")
	node.WriteConfig(t, nil)
	key, token := node.StartFresh(t)
	seed := testSeed(t, "RANDOM_SEED")
	r := &randRun{
		t: t, node: node, key: key, vc: newVaultClient(node.Addr, token),
		rng: rand.New(rand.NewPCG(seed, 3)), ops: map[string]int{}, revoked: map[string]bool{},
	}
	t.Logf("random operations: seed %d (RANDOM_SEED replays the order), %s, Vault at %s", seed, duration, node.Addr)
	registerPlugin(t, r.vc, sha, nil)
	mountPlugin(t, r.vc, "jwt", node.Addr+"/v1/jwt", 2)
	for name, ring := range randRings {
		r.vc.mustWrite(t, "jwt/keys/"+name, ring.settings)
		r.vc.mustWrite(t, "jwt/keys/"+name+"/rotate", map[string]any{"force": true})
		r.vc.mustWrite(t, "jwt/roles/"+name, map[string]any{
			"key": name, "audiences": []string{apiAudience}, "subject_template": "random-ops",
			"ttl": ring.maxTTL, "max_ttl": ring.maxTTL,
		})
	}

	// The run goes on past its duration until it has proven what the
	// floors below ask: enough kills, and enough tokens rechecked before
	// expiry. The steady ring makes the second certain: no operation but
	// signing touches it, so its tokens are never exempt, and one is signed
	// every second Vault is up. Only a Vault that stops answering can keep
	// the floors unmet until the hard end.
	end, hardEnd := time.Now().Add(duration), time.Now().Add(2*duration)
	proven := func() bool { return r.kills >= minRandKills && r.rechecked >= minRandRechecks }
	nextKill := time.Now().Add(r.killGap())
	var lastSteady time.Time
	for now := time.Now(); now.Before(end) || (!proven() && now.Before(hardEnd)); now = time.Now() {
		r.recheckDue(false)
		if now.After(nextKill) {
			r.crash()
			nextKill = time.Now().Add(r.killGap())
			continue
		}
		if now.Sub(lastSteady) >= time.Second {
			lastSteady = now
			r.signSteady()
		}
		r.step()
		time.Sleep(time.Duration(r.rng.IntN(300)) * time.Millisecond)
	}
	// Let the last tokens reach their recheck.
	for deadline := time.Now().Add(25 * time.Second); time.Now().Before(deadline) && r.pendingRechecks() > 0; time.Sleep(200 * time.Millisecond) {
		r.recheckDue(false)
	}
	r.recheckDue(true)

	names := make([]string, 0, len(r.ops))
	for op := range r.ops {
		names = append(names, op)
	}
	sort.Strings(names)
	var summary []string
	for _, op := range names {
		summary = append(summary, fmt.Sprintf("%s %d", op, r.ops[op]))
	}
	t.Logf("operations run: %s", strings.Join(summary, ", "))
	t.Logf("tokens: %d issued and verified at issue, %d verified again shortly before expiry, %d expired while Vault was down, %d of revoked keys exempt; %d SIGKILLs; %d verification failures",
		len(r.tokens), r.rechecked, r.missed, r.exempt, r.kills, len(r.failures))
	for _, f := range r.failures {
		t.Error(f)
	}
	if !proven() {
		t.Errorf("only %d SIGKILLs and %d tokens rechecked before expiry in %s, want %d and %d: Vault stopped answering", r.kills, r.rechecked, 2*duration, minRandKills, minRandRechecks)
	}
	if r.serverErrors > 0 {
		t.Errorf("%d answers were 5xx while Vault was up and the mount loaded", r.serverErrors)
	}
}

// The floors a run must reach before it ends.
const (
	minRandKills    = 3
	minRandRechecks = 20
)

// signSteady signs a token on the steady ring, which no other operation
// touches.
func (r *randRun) signSteady() {
	r.ops["sign steady"]++
	if resp, ok := r.call(http.MethodPost, "jwt/sign/steady", map[string]any{"ttl": 5 + r.rng.IntN(10)}); ok && resp.Status == http.StatusOK {
		r.issued("steady", resp.Data)
	}
}

type randRing struct {
	settings map[string]any
	maxTTL   int
}

// The rings: short periods, so that a few minutes hold dozens of rotations.
var randRings = map[string]randRing{
	"r10": {settings: map[string]any{"algorithm": "ES256", "rotation_period": 10, "publish_lead": 5, "verification_ttl": 80}, maxTTL: 15},
	"r20": {settings: map[string]any{"algorithm": "EdDSA", "rotation_period": 20, "publish_lead": 10, "verification_ttl": 100}, maxTTL: 20},
	// steady is only signed with (signSteady): its tokens are never exempt.
	"steady": {settings: map[string]any{"algorithm": "ES256", "rotation_period": 10, "publish_lead": 5, "verification_ttl": 80}, maxTTL: 15},
}

type randToken struct {
	ring, token, kid string
	exp              int64
	checked          bool
}

type randRun struct {
	t            *testing.T
	node         *testserver.RaftNode
	key          string
	vc           *vaultClient
	rng          *rand.Rand
	ops          map[string]int
	tokens       []*randToken
	revoked      map[string]bool // revoked on purpose, or maybe, when a crash cut the answer off
	failures     []string
	rechecked    int
	missed       int
	exempt       int
	kills        int
	serverErrors int
}

func (r *randRun) killGap() time.Duration {
	return time.Duration(8+r.rng.IntN(20)) * time.Second
}

// call sends one request; it reports a 5xx as an error of the plugin (the
// mount is loaded whenever call runs) and a transport error as a lost
// answer.
func (r *randRun) call(method, path string, body any) (*apiResponse, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	resp, err := r.vc.call(ctx, method, path, body)
	if err != nil {
		return nil, false
	}
	if resp.Status >= 500 {
		r.serverErrors++
		r.failures = append(r.failures, fmt.Sprintf("%s %s: status %d: %s", method, path, resp.Status, resp.Body))
		return resp, false
	}
	return resp, true
}

func (r *randRun) pick(list ...string) string { return list[r.rng.IntN(len(list))] }

func (r *randRun) ring() string { return r.pick("r10", "r20") }

// step runs one random operation.
func (r *randRun) step() {
	ring := r.ring()
	switch n := r.rng.IntN(40); {
	case n < 18:
		r.ops["sign"]++
		body := map[string]any{"ttl": 3 + r.rng.IntN(randRings[ring].maxTTL-2)}
		if resp, ok := r.call(http.MethodPost, "jwt/sign/"+ring, body); ok && resp.Status == http.StatusOK {
			r.issued(ring, resp.Data)
		}
	case n < 22:
		r.ops["sign batch"]++
		items := []any{map[string]any{}, map[string]any{"ttl": 5}, map[string]any{"ttl": "oops"}}
		if resp, ok := r.call(http.MethodPost, "jwt/sign/"+ring, map[string]any{"batch_input": items}); ok && resp.Status == http.StatusOK {
			results, _ := resp.Data["batch_results"].([]any)
			for _, res := range results {
				if m, ok := res.(map[string]any); ok && m["token"] != nil {
					r.issued(ring, m)
				}
			}
		}
	case n < 27:
		kind := r.pick("scheduled", "forced", "forced", "scheduled", "forced", "revoking")
		r.ops["rotate "+kind]++
		body := map[string]any{}
		switch kind {
		case "forced":
			body["force"] = true
		case "revoking":
			body["revoke_active"] = true
			// The outgoing key is revoked even if the answer is lost; it is
			// the active key, or the next one if that activated meanwhile.
			if rg, ok := r.readRing(ring); ok {
				for _, k := range rg.SigningKeys {
					if k.State == "active" || k.State == "pending" {
						r.revoked[k.Kid] = true
					}
				}
			}
		}
		if resp, ok := r.call(http.MethodPost, "jwt/keys/"+ring+"/rotate", body); ok && kind == "revoking" {
			if prev, _ := resp.Data["previous_kid"].(string); prev != "" {
				r.revoked[prev] = true
			}
		}
	case n < 29:
		rg, ok := r.readRing(ring)
		if !ok || len(rg.SigningKeys) == 0 {
			return
		}
		// Any key, the active one less often: revoking it exempts every
		// token it signed from the checks.
		k := rg.SigningKeys[r.rng.IntN(len(rg.SigningKeys))]
		if k.State == "active" && r.rng.IntN(4) > 0 {
			return
		}
		r.ops["revoke "+k.State]++
		r.revoked[k.Kid] = true
		r.call(http.MethodPost, "jwt/keys/"+ring+"/revoke", map[string]any{"kid": k.Kid})
	case n < 30:
		r.ops["rollback"]++
		r.call(http.MethodPost, "jwt/keys/"+ring+"/rollback", nil)
	case n < 33:
		field, value := "verification_ttl", any(80+r.rng.IntN(3)*10)
		switch r.rng.IntN(3) {
		case 1:
			field, value = "publish_lead", 5+r.rng.IntN(4)
		case 2:
			field, value = "algorithm", r.pick("ES256", "EdDSA", "ES384")
		}
		r.ops["change "+field]++
		r.call(http.MethodPost, "jwt/keys/"+ring, map[string]any{field: value})
	default:
		r.ops["fetch JWKS"]++
		if _, ok := r.fetch(); !ok {
			r.failures = append(r.failures, "a JWKS fetch failed while Vault was up")
		}
	}
}

func (r *randRun) readRing(name string) (ring, bool) {
	resp, ok := r.call(http.MethodGet, "jwt/keys/"+name, nil)
	if !ok || resp.Status != http.StatusOK {
		return ring{}, false
	}
	var out ring
	raw, _ := resp.Data["signing_keys"].([]any)
	for _, e := range raw {
		m, _ := e.(map[string]any)
		kid, _ := m["kid"].(string)
		state, _ := m["state"].(string)
		out.SigningKeys = append(out.SigningKeys, signingKey{Kid: kid, State: state})
	}
	return out, true
}

// fetch GETs the mount's JWKS with no token.
func (r *randRun) fetch() (jose.JSONWebKeySet, bool) {
	var set jose.JSONWebKeySet
	resp, err := http.Get(r.node.Addr + "/v1/jwt/jwks")
	if err != nil {
		return set, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return set, false
	}
	return set, json.Unmarshal(body, &set) == nil
}

// issued verifies a new token at once against the served JWKS.
func (r *randRun) issued(ring string, data map[string]any) {
	tok, _ := data["token"].(string)
	kid, _ := data["kid"].(string)
	exp, err := jsonInt(data["expires_at"])
	if tok == "" || kid == "" || err != nil {
		r.failures = append(r.failures, fmt.Sprintf("incomplete sign answer: %v", data))
		return
	}
	rt := &randToken{ring: ring, token: tok, kid: kid, exp: exp}
	r.tokens = append(r.tokens, rt)
	set, ok := r.fetch()
	if !ok {
		// Vault went down between the two requests: the recheck decides.
		return
	}
	if err := r.verify(rt, set); err != nil {
		r.failures = append(r.failures, fmt.Sprintf("at issue: %v", err))
	}
}

func (r *randRun) verify(rt *randToken, set jose.JSONWebKeySet) error {
	keys := set.Key(rt.kid)
	if len(keys) != 1 {
		return fmt.Errorf("token of ring %s, kid %s, exp in %ds: the JWKS holds %d keys with that kid", rt.ring, rt.kid, rt.exp-time.Now().Unix(), len(keys))
	}
	if _, _, err := verifyWithJose(rt.token, set, keys[0].Algorithm); err != nil {
		return fmt.Errorf("token of ring %s: %w", rt.ring, err)
	}
	return nil
}

func (r *randRun) pendingRechecks() int {
	n := 0
	for _, rt := range r.tokens {
		if !rt.checked && time.Now().Unix() < rt.exp {
			n++
		}
	}
	return n
}

// recheckDue verifies again every token within two seconds of its expiry
// (all remaining ones when final).
func (r *randRun) recheckDue(final bool) {
	now := time.Now().Unix()
	var set jose.JSONWebKeySet
	fetched := false
	for _, rt := range r.tokens {
		if rt.checked {
			continue
		}
		if now >= rt.exp {
			rt.checked = true
			r.missed++
			continue
		}
		if !final && rt.exp-now > 2 {
			continue
		}
		if r.revoked[rt.kid] {
			rt.checked = true
			r.exempt++
			continue
		}
		if !fetched {
			var ok bool
			if set, ok = r.fetch(); !ok {
				return // down: retry on the next pass while time remains
			}
			fetched = true
		}
		rt.checked = true
		r.rechecked++
		if err := r.verify(rt, set); err != nil {
			r.failures = append(r.failures, fmt.Sprintf("%ds before expiry: %v", rt.exp-now, err))
		}
	}
}

// crash kills Vault with SIGKILL, restarts and unseals it, and waits for
// the mount.
func (r *randRun) crash() {
	t := r.t
	r.kills++
	r.ops["SIGKILL and restart"]++
	r.node.Kill9()
	if err := r.node.Start(); err != nil {
		t.Fatalf("restart: %v", err)
	}
	if err := r.node.Unseal(r.key); err != nil {
		t.Fatal(err)
	}
	if err := r.node.WaitHealth(60*time.Second, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	if err := waitMount(r.vc, "jwt/keys/r10", 60*time.Second); err != nil {
		t.Fatal(err)
	}
}
