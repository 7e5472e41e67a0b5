package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestSafetyCrash kills a Vault server with persistent integrated storage
// (single-node Raft in a temporary directory) with SIGKILL again and again
// while keys rotate, restarts and unseals it, and checks after every crash:
// no key was lost, every ring has exactly one active key that can sign,
// every token issued before the crash that has not expired still verifies
// against the JWKS, and the schedule goes on from the stored timestamps.
// The ring long signs tokens that outlive the whole test, so every
// iteration verifies tokens from before its crash however slowly Vault
// restarts: an iteration that checked no token, or kept no kid, fails.
//
// Most iterations kill Vault (and the plugin process it started) at a random
// moment while a workload forces rotations and signs. The others run the
// plugin built with the crashhook tag with JWT_ROTOR_CRASH_AT set through
// the catalog's env, so that the plugin kills itself at a named point
// between two storage writes (after a private key is written and before
// the ring that refers to it; right after the ring write), and then Vault is
// killed too. At the end Vault stays up until maintenance has run, to show
// the pipeline is restocked after the crashes. Takes about a minute and a half.
func TestSafetyCrash(t *testing.T) {
	t.Parallel()
	const (
		randomKills = 16
		hookKills   = 3 // per crash point
		maxAge      = 5
	)
	crashPoints := []string{"after-private-put", "after-ring-put"}

	crashBins, err := bins.WithCrashhook()
	if err != nil {
		t.Fatal(err)
	}
	root := testserver.TempDir(t, "jwt-rotor-crash-")
	node, sha := testserver.NewRaftNode(t, crashBins, root, "crash-1")
	node.WriteConfig(t, nil)
	key, token := node.StartFresh(t)

	c := &crashRun{t: t, node: node, key: key, sha: sha, vc: newVaultClient(node.Addr, token), mountPath: "jwt", seed: testSeed(t, "CRASH_SEED")}
	c.rng = rand.New(rand.NewPCG(c.seed, 7))
	c.issuer = node.Addr + "/v1/jwt"
	c.known = map[string]knownKey{}
	c.fastKeys = map[string]signingKey{}
	t.Logf("crash test: node %s, random seed %d (CRASH_SEED replays it)", node.Addr, c.seed)

	registerPlugin(t, c.vc, sha, nil)
	mountPlugin(t, c.vc, c.mountPath, c.issuer, maxAge)
	// fast rotates on its own every 10s; ops is rotated by hand (forced)
	// by the workload.
	c.vc.mustWrite(t, "jwt/keys/fast", map[string]any{
		"algorithm": "ES256", "rotation_period": 10, "publish_lead": 10, "verification_ttl": 80,
	})
	c.vc.mustWrite(t, "jwt/keys/ops", map[string]any{
		"algorithm": "ES256", "rotation_period": 3600, "publish_lead": 10, "verification_ttl": 70,
	})
	// long is never rotated by hand, and its tokens live an hour.
	c.vc.mustWrite(t, "jwt/keys/long", map[string]any{
		"algorithm": "ES256", "rotation_period": 3600, "publish_lead": 10, "verification_ttl": 7200,
	})
	for ring, ttl := range map[string]int{"fast": 15, "ops": 10, "long": 3600} {
		c.vc.mustWrite(t, "jwt/keys/"+ring+"/rotate", map[string]any{"force": true})
		c.vc.mustWrite(t, "jwt/roles/"+ring, map[string]any{
			"key": ring, "audiences": []string{apiAudience}, "subject_template": "saf-crash",
			"ttl": ttl, "max_ttl": ttl,
		})
	}
	c.start = time.Now()

	var plan []string
	for range randomKills {
		plan = append(plan, "random")
	}
	for _, p := range crashPoints {
		for range hookKills {
			plan = append(plan, p)
		}
	}
	c.rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
	for i, kind := range plan {
		if t.Failed() {
			break
		}
		c.iteration(i+1, kind)
	}
	if t.Failed() {
		return
	}
	c.finalPhase()
	t.Logf("crash test: %d iterations (%d random SIGKILLs, %d at crash points %v), %d tokens signed, %d forced rotations acknowledged, %d kids tracked, fast ring signed with %d kids",
		len(plan), randomKills, hookKills*len(crashPoints), crashPoints, len(c.tokens), c.rotations, len(c.known), len(c.fastOrder))
	for _, line := range c.report {
		t.Log(line)
	}
}

// crashRings are the rings every iteration signs on and checks.
var crashRings = []string{"fast", "ops", "long"}

// knownKey is what the test has seen of a kid before a crash.
type knownKey struct {
	ring     string
	removeAt int64 // last seen; 0 = not scheduled
}

type crashToken struct {
	signedToken
	ring string
}

type crashRun struct {
	t         *testing.T
	node      *testserver.RaftNode
	key, sha  string
	vc        *vaultClient
	mountPath string
	issuer    string
	seed      uint64
	rng       *rand.Rand
	start     time.Time

	mu        sync.Mutex
	tokens    []crashToken
	known     map[string]knownKey
	rotations int
	fastKeys  map[string]signingKey
	fastOrder []string
	report    []string
}

func (c *crashRun) noteRing(name string, r ring) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range r.SigningKeys {
		if k.State == "removed" || k.State == "revoked" {
			continue
		}
		c.known[k.Kid] = knownKey{ring: name, removeAt: k.RemoveAt}
		if name == "fast" {
			c.fastKeys[k.Kid] = k
		}
	}
}

func (c *crashRun) noteToken(ring string, s signedToken) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tokens = append(c.tokens, crashToken{signedToken: s, ring: ring})
	if _, ok := c.known[s.kid]; !ok {
		c.known[s.kid] = knownKey{ring: ring}
	}
	if ring == "fast" {
		if n := len(c.fastOrder); n == 0 || c.fastOrder[n-1] != s.kid {
			if slices.Contains(c.fastOrder, s.kid) {
				c.t.Errorf("fast ring: kid %s signs again after %s took over", s.kid, c.fastOrder[n-1])
			}
			c.fastOrder = append(c.fastOrder, s.kid)
		}
	}
}

func (c *crashRun) sign(ctx context.Context, ring string) (signedToken, error) {
	s, err := signBody(ctx, c.vc, c.mountPath+"/sign/"+ring, map[string]any{})
	if err == nil {
		c.noteToken(ring, s)
	}
	return s, err
}

// workload forces rotations of ops and signs on both rings until ctx ends,
// noting everything Vault acknowledged.
func (c *crashRun) workload(ctx context.Context, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	for ctx.Err() == nil {
		switch rng.IntN(3) {
		case 0:
			resp, err := c.vc.call(ctx, http.MethodPost, c.mountPath+"/keys/ops/rotate", map[string]any{"force": true})
			if err == nil && resp.Status == http.StatusOK {
				c.mu.Lock()
				c.rotations++
				for _, f := range []string{"previous_kid", "active_kid", "pending_kid"} {
					if kid, _ := resp.Data[f].(string); kid != "" {
						if _, ok := c.known[kid]; !ok {
							c.known[kid] = knownKey{ring: "ops"}
						}
					}
				}
				c.mu.Unlock()
			}
		case 1:
			_, _ = c.sign(ctx, "ops")
		default:
			_, _ = c.sign(ctx, "fast")
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50+rng.IntN(250)) * time.Millisecond):
		}
	}
}

// iteration runs one crash and the checks after it.
func (c *crashRun) iteration(i int, kind string) {
	t := c.t
	t.Helper()
	before := map[string]ring{}
	for _, name := range crashRings {
		before[name] = readRingOneActive(t, c.vc, c.mountPath, name)
		c.noteRing(name, before[name])
		for range 2 {
			if _, err := c.sign(context.Background(), name); err != nil {
				t.Fatalf("iteration %d: sign on %s before the crash: %v", i, name, err)
			}
		}
	}
	opsBefore := readRingOneActive(t, c.vc, c.mountPath, "ops")
	activeBefore := opsBefore.inState("active")[0]
	pendingBefore, _ := opsBefore.nextPending()

	detail := ""
	var rotErr error
	var rotResp *apiResponse
	killsBefore := 0
	rerun := ""
	switch kind {
	case "random":
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.workload(ctx, c.rng.Uint64())
		}()
		wait := time.Duration(c.rng.IntN(2500)) * time.Millisecond
		time.Sleep(wait)
		c.node.Kill9()
		cancel()
		wg.Wait()
		detail = fmt.Sprintf("SIGKILL %s into the workload", wait.Round(time.Millisecond))
	default:
		// The plugin kills itself at the named point of the next ring
		// write, which a forced rotation of ops makes.
		registerPlugin(t, c.vc, c.sha, []string{"JWT_ROTOR_CRASH_AT=" + kind})
		c.vc.mustWrite(t, "sys/plugins/reload/backend", map[string]any{"plugin": pluginName})
		if err := waitMount(c.vc, c.mountPath+"/keys/ops", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		// The workload's forced rotations may have filled the ring to its
		// key bound: the plugin then refuses this one with a 400 before it
		// writes (so it does not reach the crash point) and names when a
		// key leaves the JWKS. Wait until then and force again.
		var resp *apiResponse
		var err error
		for attempt := 1; ; attempt++ {
			opsBefore = readRingOneActive(t, c.vc, c.mountPath, "ops")
			activeBefore = opsBefore.inState("active")[0]
			pendingBefore, _ = opsBefore.nextPending()
			killsBefore = c.pluginKills()
			// When the plugin dies during a request, Vault may start it
			// again and send it the same request once more (it does when
			// it sees the plugin's exit before the failed call returns, a
			// race). That rerun still has the crash point: without
			// expected_active_kid it would rotate a second time after a
			// write at after-ring-put. With it, the rerun finds the first
			// write and does nothing.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resp, err = c.vc.call(ctx, http.MethodPost, c.mountPath+"/keys/ops/rotate", map[string]any{"force": true, "expected_active_kid": activeBefore.Kid})
			cancel()
			until, full := boundRetryAt(err, resp)
			if !full {
				break
			}
			if attempt == 3 {
				t.Fatalf("iteration %d: the forced rotation was refused for the key bound %d times: %s", i, attempt, resp.Body)
			}
			time.Sleep(time.Until(until) + time.Second)
		}
		if err == nil && resp.Status == http.StatusOK {
			// Only Vault's rerun of the request on a fresh plugin can
			// answer, and only at after-ring-put: it found the ring the
			// dead plugin wrote, so it rotated nothing.
			rotated, _ := resp.Data["rotated"].(bool)
			if active, _ := resp.Data["active_kid"].(string); kind != "after-ring-put" || rotated || active != pendingBefore.Kid {
				t.Fatalf("iteration %d: the rotation succeeded although the plugin should have died at %s: %s", i, kind, resp.Body)
			}
			rerun = " (Vault reran it: no-op)"
		}
		// Vault logs the plugin's death by SIGKILL.
		for deadline := time.Now().Add(5 * time.Second); c.pluginKills() == killsBefore; time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("iteration %d: the rotation failed (%v %v) but Vault logged no plugin killed at %s", i, err, resp, kind)
			}
		}
		rotErr, rotResp = err, resp
		// Later restarts run the plugin without the crash point.
		registerPlugin(t, c.vc, c.sha, nil)
		c.node.Kill9()
		detail = fmt.Sprintf("plugin killed itself at %s during a forced rotation%s, then SIGKILL", kind, rerun)
	}

	crashAt := time.Now()
	if err := c.node.Start(); err != nil {
		t.Fatalf("iteration %d: restart: %v", i, err)
	}
	if err := c.node.Unseal(c.key); err != nil {
		t.Fatalf("iteration %d: %v", i, err)
	}
	if err := c.node.WaitHealth(60*time.Second, http.StatusOK); err != nil {
		t.Fatalf("iteration %d: %v", i, err)
	}
	if err := waitMount(c.vc, c.mountPath+"/keys/fast", 60*time.Second); err != nil {
		t.Fatalf("iteration %d: %v", i, err)
	}
	back := time.Since(crashAt)

	checked := c.check(i, before)
	opsAfter := readRingOneActive(t, c.vc, c.mountPath, "ops")
	activeAfter := opsAfter.inState("active")[0]
	switch kind {
	case "after-private-put":
		// The ring write never happened: the ring is as before.
		if activeAfter.Kid != activeBefore.Kid {
			t.Errorf("iteration %d (%s): active kid %s, want the one before the crash %s: the ring changed although the crash came before its write", i, kind, activeAfter.Kid, activeBefore.Kid)
		}
		for _, k := range opsAfter.SigningKeys {
			if _, ok := opsBefore.byKid(k.Kid); !ok {
				t.Errorf("iteration %d (%s): ring holds kid %s that was not there before the crash", i, kind, k.Kid)
			}
		}
		checked += ", ring unchanged by the interrupted write"
	case "after-ring-put":
		// The ring write happened: the forced rotation took effect.
		if activeAfter.Kid != pendingBefore.Kid {
			t.Errorf("iteration %d (%s): active kid %s, want the promoted key %s: the ring write before the crash was lost", i, kind, activeAfter.Kid, pendingBefore.Kid)
		}
		if k, ok := opsAfter.byKid(activeBefore.Kid); !ok || k.State != "retiring" {
			t.Errorf("iteration %d (%s): the previous key %s is %+v, want retiring", i, kind, activeBefore.Kid, k)
		}
		checked += ", forced rotation written before the crash took effect"
	}
	if kind != "random" && t.Failed() {
		t.Logf("iteration %d (%s): plugin processes killed during the rotation: %d; the rotation answered %s", i, kind, c.pluginKills()-killsBefore, answerText(rotErr, rotResp))
		t.Logf("ops before the crash:\n%s\nops after the restart:\n%s", ringDump(opsBefore), ringDump(opsAfter))
	}
	c.report = append(c.report, fmt.Sprintf("iteration %2d: %-78s back in %-6s checked %s", i, detail, back.Round(10*time.Millisecond), checked))
}

// ringDump lists a ring's keys with their states and timestamps.
func ringDump(r ring) string {
	var b strings.Builder
	for _, k := range r.SigningKeys {
		fmt.Fprintf(&b, "  %s %-8s publish %d activate %d retire %d remove %d revoked %d\n", k.Kid, k.State, k.PublishAt, k.ActivateAt, k.RetireAt, k.RemoveAt, k.RevokedAt)
	}
	return b.String()
}

// answerText is a call's error or status and body, for a failure message.
func answerText(err error, resp *apiResponse) string {
	if err != nil {
		return "error " + err.Error()
	}
	return fmt.Sprintf("status %d: %s", resp.Status, resp.Body)
}

// pluginKills counts the plugin deaths by SIGKILL in the node's log.
func (c *crashRun) pluginKills() int {
	raw, err := os.ReadFile(c.node.LogPath)
	if err != nil {
		return 0
	}
	return strings.Count(string(raw), `error="signal: killed"`)
}

// check runs the checks every crash must pass and says what it checked.
func (c *crashRun) check(i int, before map[string]ring) string {
	t := c.t
	t.Helper()
	now := time.Now()
	jwks := fetchJWKSURL(t, c.node.Addr+"/v1/"+c.mountPath+"/jwks")
	rings := map[string]ring{}
	for _, name := range crashRings {
		rings[name] = readRingOneActive(t, c.vc, c.mountPath, name)
	}

	// No key lost: every kid seen before the crash whose removal is not
	// due is still in its ring, neither removed nor revoked, and published.
	c.mu.Lock()
	known := map[string]knownKey{}
	for k, v := range c.known {
		known[k] = v
	}
	tokens := slices.Clone(c.tokens)
	c.mu.Unlock()
	kept := 0
	for kid, k := range known {
		if k.removeAt != 0 && k.removeAt <= now.Unix()+1 {
			continue
		}
		got, ok := rings[k.ring].byKid(kid)
		switch {
		case !ok:
			t.Errorf("iteration %d: kid %s of ring %s (remove_at %d) is lost after the crash", i, kid, k.ring, k.removeAt)
		case got.State == "removed" || got.State == "revoked":
			t.Errorf("iteration %d: kid %s of ring %s is %s after the crash (remove_at was %d)", i, kid, k.ring, got.State, k.removeAt)
		case !jwks.has(kid):
			t.Errorf("iteration %d: kid %s of ring %s is not in the JWKS after the crash", i, kid, k.ring)
		default:
			kept++
		}
	}

	// Exactly one active key per ring (readRingOneActive), and it signs.
	for _, name := range crashRings {
		r := rings[name]
		s, err := c.sign(context.Background(), name)
		if err != nil {
			t.Errorf("iteration %d: sign on %s after the crash: %v", i, name, err)
			continue
		}
		active := r.inState("active")[0]
		if nearRetire := active.RetireAt != 0 && abs(s.iat-active.RetireAt) <= 1; s.kid != active.Kid && !nearRetire {
			t.Errorf("iteration %d: %s signs with %s, its active key is %s", i, name, s.kid, active.Kid)
		}
		// No dry pipeline: without a pending key (maintenance runs a
		// minute after an unseal, and this test restarts Vault more often
		// than that) the active key must have no retirement scheduled.
		if len(r.inState("pending")) == 0 && active.RetireAt != 0 {
			t.Errorf("iteration %d: ring %s has no pending key, yet its active key %s retires at %d: %+v", i, name, active.Kid, active.RetireAt, r.SigningKeys)
		}
		c.noteRing(name, r)
	}

	// The schedule is the stored one: fast's keys keep their activation
	// times, and the key that signs is the one the timestamps name.
	fast := rings["fast"]
	for _, old := range before["fast"].SigningKeys {
		if k, ok := fast.byKid(old.Kid); ok && k.ActivateAt != old.ActivateAt {
			t.Errorf("iteration %d: fast kid %s activate_at moved from %d to %d across the crash", i, old.Kid, old.ActivateAt, k.ActivateAt)
		}
	}

	// Tokens issued before the crash that have not expired verify.
	verified, longTokens := 0, 0
	for _, tok := range tokens {
		if tok.ring == "long" {
			longTokens++
		}
		if tok.exp <= now.Unix()+1 {
			continue
		}
		if _, err := verifyWithGolangJWT(tok.token, jwks.Set, expectation{
			Alg: "ES256", Issuer: c.issuer, Audience: apiAudience, Subject: "saf-crash", At: now,
		}); err != nil {
			t.Errorf("iteration %d: a %s token of kid %s (exp %d) issued before the crash no longer verifies: %v", i, tok.ring, tok.kid, tok.exp, err)
			continue
		}
		verified++
	}
	// Floors: long's tokens are all unexpired, and its kids all kept.
	if verified < longTokens || verified == 0 {
		t.Errorf("iteration %d: %d unexpired tokens verified after the crash, want at least the %d of ring long (and more than none)", i, verified, longTokens)
	}
	if kept == 0 {
		t.Errorf("iteration %d: no kid checked as kept after the crash", i)
	}
	return fmt.Sprintf("%d kids kept, %d unexpired tokens verified, 1 active key per ring, every ring signs", kept, verified)
}

// finalPhase keeps Vault up until maintenance has run, then checks that
// fast was restocked and signed on schedule throughout.
func (c *crashRun) finalPhase() {
	t := c.t
	t.Helper()
	upSince := time.Now()
	deadline := upSince.Add(80 * time.Second)
	restocked := false
	for time.Now().Before(deadline) {
		if _, err := c.sign(context.Background(), "fast"); err != nil {
			t.Fatalf("final phase: sign on fast: %v", err)
		}
		r := readRingOneActive(t, c.vc, c.mountPath, "fast")
		c.noteRing("fast", r)
		for _, k := range r.SigningKeys {
			if k.PublishAt >= upSince.Unix() {
				restocked = true
			}
		}
		if restocked {
			break
		}
		time.Sleep(time.Second)
	}
	if !restocked {
		t.Errorf("no pending key generated on fast within %s after the last restart: maintenance did not resume", time.Since(upSince).Round(time.Second))
	}

	// Every fast token was signed by the key whose stored window holds its
	// iat (within a second of a boundary either key is right).
	c.mu.Lock()
	defer c.mu.Unlock()
	wrong := 0
	for _, tok := range c.tokens {
		if tok.ring != "fast" {
			continue
		}
		var scheduled []string
		near := false
		for _, k := range c.fastKeys {
			if abs(tok.iat-k.ActivateAt) <= 1 || (k.RetireAt != 0 && abs(tok.iat-k.RetireAt) <= 1) {
				near = true
			}
			if k.ActivateAt <= tok.iat && (k.RetireAt == 0 || tok.iat < k.RetireAt) {
				scheduled = append(scheduled, k.Kid)
			}
		}
		if !near && (len(scheduled) != 1 || scheduled[0] != tok.kid) {
			wrong++
			if wrong <= 5 {
				t.Errorf("fast token issued at %d signed by %s; the stored schedule says %v", tok.iat, tok.kid, scheduled)
			}
		}
	}
	elapsed := time.Since(c.start)
	// The keys stocked when fast was created cover its first 130s; the
	// crashes must not stop them from taking over on schedule.
	if len(c.fastOrder) < 6 {
		t.Errorf("fast signed with %d kids in %s with a 10s rotation_period, want at least 6", len(c.fastOrder), elapsed.Round(time.Second))
	}
	c.report = append(c.report, fmt.Sprintf("final: maintenance restocked fast %s after the last restart; %d fast kids signed in order over %s, every token by the key its stored window names",
		time.Since(upSince).Round(time.Second), len(c.fastOrder), elapsed.Round(time.Second)))
}

// fetchJWKSURL fetches a JWKS URL with no token.
func fetchJWKSURL(t testing.TB, url string) fetchedJWKS {
	t.Helper()
	resp, body := rawGet(t, http.MethodGet, url, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", url, resp.StatusCode, body)
	}
	return parseJWKS(t, url, resp, body)
}

// boundRetryAt reports whether a rotation was refused because the ring
// is at its key bound, and the time the plugin names for a retry.
func boundRetryAt(err error, resp *apiResponse) (time.Time, bool) {
	if err != nil || resp == nil || resp.Status != http.StatusBadRequest || !strings.Contains(string(resp.Body), "above the limit of") {
		return time.Time{}, false
	}
	_, after, ok := strings.Cut(string(resp.Body), "retry after ")
	if !ok {
		return time.Time{}, false
	}
	at, perr := time.Parse(time.RFC3339, strings.SplitN(after, ",", 2)[0])
	if perr != nil {
		return time.Time{}, false
	}
	return at, true
}
