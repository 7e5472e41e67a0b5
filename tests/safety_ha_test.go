package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestSafetyFailover runs a 3-node Vault cluster with integrated storage on
// loopback ports (real `vault server -config` processes, retry_join, the
// plugin binary in every node's plugin directory, registered once: the
// catalog is replicated). Tokens are signed through every node in turn,
// alternately by sign/ha and by a read of token/ha (standbys forward both
// to the active node), and checked by the verifier
// libraries, which reach the JWKS through a small caching proxy in front of
// the three nodes (as docs/operations.md advises for production) or, for three of
// them, each node directly with a failover list. The JWKS is byte-identical
// with the same ETag on every node. The active node is killed with SIGKILL
// two seconds before a scheduled activation: the new active node activates
// the next key on schedule, no key activates twice or out of turn, no token
// fails verification, the killed node rejoins, and maintenance resumes on
// the new active node. Signing fails only while a node it goes through is
// without an active node to answer: every failed sign call overlaps the
// failover window measured on that node (from the kill until it serves the
// mount again; for the killed node, until it has rejoined), and the caching
// proxy serves stale copies only in that window. Takes about two minutes.
func TestSafetyFailover(t *testing.T) {
	t.Parallel()
	const (
		maxAge    = 5
		period    = 20
		lead      = 20
		verifyTTL = 120
		ttl       = 20
		alg       = "ES256"
		signEvery = 300 * time.Millisecond
	)
	nodes, clients, sha, key := startRaftCluster(t, "jwt-rotor-failover-", "ha")

	lb := newFailoverLB(nodes)
	t.Cleanup(lb.close)
	issuer := lb.url + "/v1/jwt"

	// Register once through a standby: the write is forwarded and the
	// catalog replicated; each node runs the binary from its own directory.
	mustWriteRetry(t, clients[1], "sys/plugins/catalog/secret/"+pluginName, testserver.CatalogEntry(sha, pluginVersion, nil))
	mustWriteRetry(t, clients[2], "sys/mounts/jwt", testserver.MountInput(pluginVersion))
	mustWriteRetry(t, clients[0], "sys/mounts/jwt/tune", testserver.TuneInput())
	mustWriteRetry(t, clients[0], "jwt/config", map[string]any{"issuer": issuer, "jwks_max_age": maxAge, "verifiers": declaredNames()})
	mustWriteRetry(t, clients[0], "jwt/keys/ha", map[string]any{
		"algorithm": alg, "rotation_period": period, "publish_lead": lead, "verification_ttl": verifyTTL,
	})
	mustWriteRetry(t, clients[1], "jwt/keys/ha/rotate", map[string]any{"force": true})
	mustWriteRetry(t, clients[2], "jwt/roles/ha", map[string]any{
		"key": "ha", "audiences": []string{apiAudience}, "subject_template": "saf-ha", "ttl": ttl, "max_ttl": ttl,
		"allow_token_read": true,
	})
	for i := range clients {
		if err := waitMount(clients[i], "jwt/keys/ha", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	sameJWKS(t, "before the failover", nodes)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	base := verifierConfig{issuer: issuer, audience: apiAudience, alg: alg, interval: maxAge * time.Second}
	vs := startVerifiers(t, ctx, base, jwksURLFor(lb.url+"/v1/jwt/jwks"))
	// Three more caches, each starting at its own node and failing over
	// to the others in order.
	for i := range nodes {
		var urls []string
		for j := range nodes {
			urls = append(urls, nodes[(i+j)%len(nodes)].Addr+"/v1/jwt/jwks")
		}
		hc, _ := countingClient(nodes[i].ID)
		c := base
		c.name = "go-jose-" + nodes[i].ID
		v := &joseVerifier{cache: newHeaderCache(hc, urls...), c: c}
		if _, err := v.cache.keys(ctx); err != nil {
			t.Fatal(err)
		}
		vs[c.name] = v
	}
	pipe := newPipeline(ctx, vs, 8*time.Second)

	// The signer goes round the nodes; a node that is down or between
	// roles fails the call, which is counted, and the next node is tried.
	sg := &haSigner{clients: clients, nodes: nodes, pipe: pipe, perNode: make([]int, len(nodes)), readsPerNode: make([]int, len(nodes)), errs: make([]int, len(nodes))}
	sigCtx, stopSigner := context.WithCancel(ctx)
	var sigDone sync.WaitGroup
	sigDone.Add(1)
	go func() {
		defer sigDone.Done()
		sg.run(sigCtx, signEvery)
	}()

	// Choose the next activation at least 6s away and kill the active
	// node 2s before it.
	leader := activeIndex(t, nodes)
	before := readRingOneActive(t, clients[0], "jwt", "ha")
	var target signingKey
	for _, k := range before.inState("pending") {
		if k.ActivateAt >= time.Now().Unix()+6 && (target.Kid == "" || k.ActivateAt < target.ActivateAt) {
			target = k
		}
	}
	if target.Kid == "" {
		t.Fatalf("no pending key activates 6s or more from now: %+v", before.SigningKeys)
	}
	killAt := time.Unix(target.ActivateAt, 0).Add(-2 * time.Second)
	time.Sleep(time.Until(killAt))
	before = readRingOneActive(t, clients[leader], "jwt", "ha")
	// The failover window opens when the kill is sent: a standby may
	// already be redirecting a call to the dying node.
	killSent := time.Now()
	nodes[leader].Kill9()
	killed := time.Now()
	t.Logf("killed the active node %s at %s, %s before key %s activates", nodes[leader].ID, killed.Format("15:04:05.000"), time.Unix(target.ActivateAt, 0).Sub(killed).Round(time.Millisecond), target.Kid)

	newLeader := -1
	for deadline := time.Now().Add(60 * time.Second); newLeader < 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		for i, n := range nodes {
			if i == leader {
				continue
			}
			if code, err := n.Health(); err == nil && code == http.StatusOK {
				newLeader = i
			}
		}
	}
	if newLeader < 0 {
		t.Fatalf("no node became active within 60s of killing %s", nodes[leader].ID)
	}
	// The failover ends, for each surviving node, when it serves the mount
	// again (a standby forwards to the new active node once it knows it).
	servesAgain := map[int]time.Time{}
	for i := range nodes {
		if i == leader {
			continue
		}
		if err := waitMount(clients[i], "jwt/keys/ha", 30*time.Second); err != nil {
			t.Fatal(err)
		}
		servesAgain[i] = time.Now()
	}
	failover := time.Since(killed)
	t.Logf("%s is active %s after the kill", nodes[newLeader].ID, failover.Round(100*time.Millisecond))

	// Two periods after the target activation the schedule must have run
	// as stored.
	time.Sleep(time.Until(time.Unix(target.ActivateAt+2*period+1, 0)))
	after := readRingOneActive(t, clients[newLeader], "jwt", "ha")
	for _, old := range before.SigningKeys {
		k, ok := after.byKid(old.Kid)
		if !ok {
			if old.RemoveAt == 0 || old.RemoveAt > time.Now().Unix() {
				t.Errorf("kid %s (remove_at %d) is gone after the failover", old.Kid, old.RemoveAt)
			}
			continue
		}
		if k.ActivateAt != old.ActivateAt {
			t.Errorf("kid %s activate_at moved from %d to %d across the failover", old.Kid, old.ActivateAt, k.ActivateAt)
		}
		if old.RetireAt != 0 && k.RetireAt != old.RetireAt {
			t.Errorf("kid %s retire_at moved from %d to %d across the failover", old.Kid, old.RetireAt, k.RetireAt)
		}
	}

	// Restart the killed node: it rejoins as a standby.
	if err := nodes[leader].Start(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[leader].Unseal(key); err != nil {
		t.Fatal(err)
	}
	if err := nodes[leader].WaitHealth(90*time.Second, http.StatusTooManyRequests); err != nil {
		t.Fatalf("%v: the killed node did not rejoin as a standby", err)
	}
	waitVoters(t, clients[newLeader], 3, 60*time.Second)
	if err := waitMount(clients[leader], "jwt/keys/ha", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	servesAgain[leader] = time.Now()
	rejoined := time.Since(killed)
	sameJWKS(t, "after the rejoin", nodes)

	// Maintenance runs on the active node only, about a minute after it
	// took over: it must stock a new key.
	stocked := false
	for deadline := killed.Add(failover + 80*time.Second); !stocked && time.Now().Before(deadline); time.Sleep(time.Second) {
		for _, k := range readRingOneActive(t, clients[newLeader], "jwt", "ha").SigningKeys {
			if k.PublishAt > killed.Unix() {
				stocked = true
			}
		}
	}
	if !stocked {
		t.Errorf("the new active node %s generated no pending key within %s of taking over", nodes[newLeader].ID, 80*time.Second)
	}
	maintained := time.Since(killed)

	stopSigner()
	sigDone.Wait()
	final := readRingOneActive(t, clients[newLeader], "jwt", "ha")
	pipe.finish()

	// Every token was signed by the key whose stored window holds its
	// iat: no activation early, late, doubled or skipped.
	keys := map[string]signingKey{}
	for _, r := range []ring{before, after, final} {
		for _, k := range r.SigningKeys {
			keys[k.Kid] = k
		}
	}
	sg.mu.Lock()
	tokens := slices.Clone(sg.tokens)
	sg.mu.Unlock()
	var order []string
	targetSeen := false
	for _, tok := range tokens {
		if n := len(order); n == 0 || order[n-1] != tok.kid {
			if slices.Contains(order, tok.kid) {
				t.Errorf("kid %s signs again after %s took over", tok.kid, order[n-1])
			}
			order = append(order, tok.kid)
		}
		if tok.kid == target.Kid {
			targetSeen = true
			if tok.iat < target.ActivateAt {
				t.Errorf("key %s signed at %d, before its activate_at %d", target.Kid, tok.iat, target.ActivateAt)
			}
		}
		var scheduled []string
		near := false
		for _, k := range keys {
			if abs(tok.iat-k.ActivateAt) <= 1 || (k.RetireAt != 0 && abs(tok.iat-k.RetireAt) <= 1) {
				near = true
			}
			if k.ActivateAt <= tok.iat && (k.RetireAt == 0 || tok.iat < k.RetireAt) {
				scheduled = append(scheduled, k.Kid)
			}
		}
		if !near && (len(scheduled) != 1 || scheduled[0] != tok.kid) {
			t.Errorf("token issued at %d signed by %s; the stored schedule says %v", tok.iat, tok.kid, scheduled)
		}
	}
	if !targetSeen {
		t.Errorf("the key %s scheduled right after the kill never signed; kids in order: %v", target.Kid, order)
	}
	// Each key in order is the next one by activate_at: none skipped.
	for i := 1; i < len(order); i++ {
		prev, cur := keys[order[i-1]], keys[order[i]]
		for _, k := range keys {
			if k.RevokedAt == 0 && k.ActivateAt > prev.ActivateAt && k.ActivateAt < cur.ActivateAt {
				t.Errorf("key %s (activate_at %d) never signed between %s and %s", k.Kid, k.ActivateAt, prev.Kid, cur.Kid)
			}
		}
	}

	table := pipe.judge(t, nil)
	var perNode strings.Builder
	sg.mu.Lock()
	failures := slices.Clone(sg.failures)
	sg.mu.Unlock()
	for i, n := range nodes {
		role := "standby"
		if i == leader {
			role = "active, killed, rejoined"
		} else if i == newLeader {
			role = "standby, then active"
		}
		window := servesAgain[i].Sub(killed)
		fmt.Fprintf(&perNode, "  %s (%s): %d tokens signed through it (%d by a read of token/ha), %d calls failed, window %s\n", n.ID, role, sg.perNode[i], sg.readsPerNode[i], sg.errs[i], window.Round(100*time.Millisecond))
		if sg.readsPerNode[i] == 0 {
			t.Errorf("no token was minted by a read through %s", n.ID)
		}
		if sg.perNode[i] == sg.readsPerNode[i] {
			t.Errorf("no token was signed by sign/ha through %s", n.ID)
		}
		if sg.perNode[i] == 0 {
			t.Errorf("no token was signed through %s", n.ID)
		}
	}
	// A sign call fails only if it overlapped its node's window: a failure
	// before the kill or after the node served the mount again is an
	// outage the failover does not explain.
	outside := 0
	for _, f := range failures {
		if f.end.Before(killSent) || f.start.After(servesAgain[f.node]) {
			outside++
			if outside <= 5 {
				t.Errorf("a sign call through %s failed outside its failover window (%s to %s): started %s, ended %s: %s",
					nodes[f.node].ID, killSent.Format("15:04:05.000"), servesAgain[f.node].Format("15:04:05.000"),
					f.start.Format("15:04:05.000"), f.end.Format("15:04:05.000"), f.err)
			}
		}
	}
	if outside > 5 {
		t.Errorf("%d sign calls in all failed outside their node's failover window", outside)
	}
	// The proxy serves its stale copy only while no node answers.
	lastServes := killSent
	for _, at := range servesAgain {
		if at.After(lastServes) {
			lastServes = at
		}
	}
	for _, at := range lb.staleTimes() {
		if at.Before(killSent) || at.After(lastServes) {
			t.Errorf("the caching proxy served a stale copy at %s, outside the failover (%s to %s)", at.Format("15:04:05.000"), killSent.Format("15:04:05.000"), lastServes.Format("15:04:05.000"))
		}
	}
	t.Logf("failover: active node killed 2s before a scheduled activation; new active after %s, killed node rejoined after %s, maintenance resumed within %s of the kill; %d tokens, %d rotations observed (kids in order %v); caching proxy served %d stale copies while no node answered\n%s%s",
		failover.Round(100*time.Millisecond), rejoined.Round(100*time.Millisecond), maintained.Round(time.Second), len(tokens), len(order)-1, order, lb.staleServed.Load(), perNode.String(), table)
}

// haSigner signs round-robin through the nodes.
type haSigner struct {
	clients []*vaultClient
	nodes   []*testserver.RaftNode
	pipe    *pipeline

	mu      sync.Mutex
	tokens  []signedToken
	perNode []int
	// readsPerNode counts the tokens of perNode minted by a read.
	readsPerNode []int
	errs         []int
	failures     []haFailure
}

// haFailure is one failed sign call: through which node, when it
// started and ended, and why.
type haFailure struct {
	node       int
	start, end time.Time
	err        error
}

func (s *haSigner) run(ctx context.Context, every time.Duration) {
	seq := 0
	for i := 0; ctx.Err() == nil; i++ {
		tick := time.Now()
		n := i % len(s.clients)
		// Odd calls read: with three nodes every node gets both kinds.
		read := i%2 == 1
		var tok signedToken
		var err error
		if read {
			tok, err = tokenRead(ctx, s.clients[n], "jwt/token/ha")
		} else {
			tok, err = signBody(ctx, s.clients[n], "jwt/sign/ha", map[string]any{})
		}
		s.mu.Lock()
		if err != nil {
			if ctx.Err() == nil {
				s.errs[n]++
				s.failures = append(s.failures, haFailure{node: n, start: tick, end: time.Now(), err: err})
			}
		} else {
			seq++
			tok.seq = seq
			s.tokens = append(s.tokens, tok)
			s.perNode[n]++
			if read {
				s.readsPerNode[n]++
			}
		}
		s.mu.Unlock()
		if err == nil {
			s.pipe.dispatch(tok)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(tick.Add(every))):
		}
	}
}

// tokenRead mints a token with a read of path, as signBody does with
// a write.
func tokenRead(ctx context.Context, c *vaultClient, path string) (signedToken, error) {
	return mint(ctx, c, http.MethodGet, path, nil)
}

// activeIndex returns the node that answers /sys/health with 200.
func activeIndex(t *testing.T, nodes []*testserver.RaftNode) int {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		for i, n := range nodes {
			if code, err := n.Health(); err == nil && code == http.StatusOK {
				return i
			}
		}
	}
	t.Fatal("no active node")
	return -1
}

// waitVoters waits until the Raft configuration lists want voters.
func waitVoters(t *testing.T, c *vaultClient, want int, timeout time.Duration) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.call(ctx, http.MethodGet, "sys/storage/raft/configuration", nil)
		cancel()
		if err != nil || resp.Status != http.StatusOK {
			continue
		}
		last = string(resp.Body)
		cfg, _ := resp.Data["config"].(map[string]any)
		servers, _ := cfg["servers"].([]any)
		voters := 0
		for _, s := range servers {
			if m, ok := s.(map[string]any); ok && m["voter"] == true {
				voters++
			}
		}
		if voters == want {
			return
		}
	}
	t.Fatalf("Raft configuration does not list %d voters after %s: %s", want, timeout, last)
}

// sameJWKS fetches the JWKS from every node and requires the same body
// and ETag. A key set changes only when a key is generated or removed, so a
// difference is retried a few times in case a boundary fell between the
// fetches.
func sameJWKS(t *testing.T, when string, nodes []*testserver.RaftNode) {
	t.Helper()
	var diff string
	for attempt := 0; attempt < 5; attempt++ {
		var bodies [][]byte
		var etags []string
		for _, n := range nodes {
			resp, body := rawGet(t, http.MethodGet, n.Addr+"/v1/jwt/jwks", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: JWKS from %s: status %d: %s", when, n.ID, resp.StatusCode, body)
			}
			parseJWKS(t, n.ID+" JWKS", resp, body)
			bodies = append(bodies, body)
			etags = append(etags, resp.Header.Get("ETag"))
		}
		diff = ""
		for i := 1; i < len(nodes); i++ {
			if !bytes.Equal(bodies[i], bodies[0]) || etags[i] != etags[0] || etags[0] == "" {
				diff = fmt.Sprintf("%s: ETag %q, %d bytes; %s: ETag %q, %d bytes", nodes[0].ID, etags[0], len(bodies[0]), nodes[i].ID, etags[i], len(bodies[i]))
			}
		}
		if diff == "" {
			return
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Errorf("%s: the nodes serve different JWKS: %s", when, diff)
}

// failoverLB is a small caching reverse proxy in front of the nodes, as an
// operator puts a load balancer or CDN in front of Vault: it sends each
// request to the nodes in turn until one answers below 500, and when none
// does it serves its last 200 for that URL while the response's max-age
// plus stale-if-error allows.
type failoverLB struct {
	nodes       []*testserver.RaftNode
	srv         *httptest.Server
	url         string
	hc          *http.Client
	next        atomic.Uint64
	staleServed atomic.Int64

	mu     sync.Mutex
	stale  map[string]lbCopy
	staled []time.Time // when each stale copy was served
}

func (lb *failoverLB) staleTimes() []time.Time {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return slices.Clone(lb.staled)
}

type lbCopy struct {
	header     http.Header
	body       []byte
	staleUntil time.Time
}

func newFailoverLB(nodes []*testserver.RaftNode) *failoverLB {
	lb := &failoverLB{nodes: nodes, hc: &http.Client{Timeout: 5 * time.Second}, stale: map[string]lbCopy{}}
	lb.srv = httptest.NewServer(lb)
	lb.url = lb.srv.URL
	return lb
}

func (lb *failoverLB) close() { lb.srv.Close() }

func (lb *failoverLB) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	start := int(lb.next.Add(1))
	for i := range lb.nodes {
		n := lb.nodes[(start+i)%len(lb.nodes)]
		req, err := http.NewRequestWithContext(r.Context(), r.Method, n.Addr+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			continue
		}
		for _, h := range []string{"If-None-Match", "User-Agent", "X-Vault-Token", "Content-Type", "Accept"} {
			if v := r.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		resp, err := lb.hc.Do(req)
		if err != nil {
			continue
		}
		rb, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode >= 500 {
			continue
		}
		if r.Method == http.MethodGet && resp.StatusCode == http.StatusOK {
			cc := parseCacheControl(resp.Header.Get("Cache-Control"))
			maxAge, _ := cc.seconds("max-age")
			sie, _ := cc.seconds("stale-if-error")
			lb.mu.Lock()
			lb.stale[r.URL.RequestURI()] = lbCopy{header: resp.Header.Clone(), body: rb, staleUntil: time.Now().Add(time.Duration(maxAge+sie) * time.Second)}
			lb.mu.Unlock()
		}
		for k, vs := range resp.Header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(rb)
		return
	}
	lb.mu.Lock()
	c, ok := lb.stale[r.URL.RequestURI()]
	lb.mu.Unlock()
	if r.Method == http.MethodGet && ok && time.Now().Before(c.staleUntil) {
		lb.staleServed.Add(1)
		lb.mu.Lock()
		lb.staled = append(lb.staled, time.Now())
		lb.mu.Unlock()
		for k, vs := range c.header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		w.WriteHeader(http.StatusOK)
		w.Write(c.body)
		return
	}
	http.Error(w, "no Vault node answered", http.StatusBadGateway)
}
