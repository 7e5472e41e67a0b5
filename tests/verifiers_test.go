package tests

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// This file holds the independent verifiers the safety, adoption and
// workload tests run against the plugin: each is a real verifier library
// with its own JWKS cache, configured the way an operator would for short
// rotation periods. None of them shares code with the plugin.

// jwksVerifier checks one token the way a service that trusts the issuer
// would: signature by a key from its cached JWKS, algorithm, issuer,
// audience and expiry (at the current time).
type jwksVerifier interface {
	verify(ctx context.Context, token string) (kid string, err error)
	// fetches counts the JWKS requests the library has made (-1: unknown).
	fetches() int64
	close()
}

// verifierConfig is what an operator tells a verifier.
type verifierConfig struct {
	name     string
	jwksURL  string // where the verifier fetches the JWKS
	issuer   string // iss to require; go-oidc discovers the JWKS from it
	audience string
	alg      string
	// interval is the refresh interval the operator configures where a
	// library polls on its own timer, and the upper bound for libraries that
	// follow max-age: the mount's jwks_max_age.
	interval time.Duration
}

// verifierKind describes one verifier library.
type verifierKind struct {
	name string
	// honoursHeaders: the library refreshes when Cache-Control max-age says
	// so.
	honoursHeaders bool
	// declared: the library fetches with ?verifier=<name>, so the plugin's
	// verifiers report names it.
	declared bool
	// staleness is the longest a JWKS change can stay unseen by the library
	// once jwks_max_age (interval) has passed since the change: its poll
	// interval on top of max-age. Zero: the library never refreshes on a
	// timer (it refetches only for an unknown kid).
	staleness func(interval time.Duration) time.Duration
	start     func(ctx context.Context, c verifierConfig) (jwksVerifier, error)
}

// verifierKinds lists the libraries; build-tagged files may add to it.
var verifierKinds = []verifierKind{
	{
		name: "go-jose-cache", honoursHeaders: true, declared: true,
		// The cache refetches on the first use after max-age.
		staleness: func(d time.Duration) time.Duration { return d },
		start:     startJoseCache,
	},
	{
		name: "keyfunc", declared: true,
		// RefreshInterval = jwks_max_age.
		staleness: func(d time.Duration) time.Duration { return d },
		start:     startKeyfunc,
	},
	{
		name:      "go-oidc",
		staleness: func(time.Duration) time.Duration { return 0 },
		start:     startOIDC,
	},
	{
		name: "node-jose", declared: true,
		// cacheMaxAge = jwks_max_age; a stale cache reloads on next use.
		staleness: func(d time.Duration) time.Duration { return d },
		start:     startNodeJose,
	},
}

// startVerifiers starts one verifier of every kind against a mount. URL
// builds the JWKS address a verifier of that name should use.
func startVerifiers(t *testing.T, ctx context.Context, base verifierConfig, url func(kind verifierKind) string) map[string]jwksVerifier {
	t.Helper()
	out := map[string]jwksVerifier{}
	for _, k := range verifierKinds {
		c := base
		c.name = k.name
		c.jwksURL = url(k)
		v, err := k.start(ctx, c)
		if err != nil {
			for _, started := range out {
				started.close()
			}
			t.Fatalf("start verifier %s: %v", k.name, err)
		}
		out[k.name] = v
	}
	t.Cleanup(func() {
		for _, v := range out {
			v.close()
		}
	})
	return out
}

func kindNamed(name string) verifierKind {
	for _, k := range verifierKinds {
		if k.name == name {
			return k
		}
	}
	panic("no verifier kind " + name)
}

func kindNames() []string {
	var names []string
	for _, k := range verifierKinds {
		names = append(names, k.name)
	}
	slices.Sort(names)
	return names
}

// declaredNames are the verifier ids to declare in the mount's config.
func declaredNames() []string {
	var names []string
	for _, k := range verifierKinds {
		if k.declared {
			names = append(names, k.name)
		}
	}
	slices.Sort(names)
	return names
}

// jwksURLFor gives declared verifiers the mount's JWKS with their id and
// the others the plain address.
func jwksURLFor(jwks string) func(k verifierKind) string {
	return func(k verifierKind) string {
		if k.declared {
			return jwks + "?verifier=" + k.name
		}
		return jwks
	}
}

// tokenKid reads the kid from a token's protected header without
// verifying anything.
func tokenKid(token string) string {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	})
	if err != nil || len(jws.Signatures) != 1 {
		return ""
	}
	return jws.Signatures[0].Protected.KeyID
}

// countingTransport counts JWKS requests (paths ending in /jwks).
type countingTransport struct {
	base http.RoundTripper
	n    atomic.Int64
	ua   string
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/jwks") || strings.HasSuffix(req.URL.Path, "/jwks.json") {
		c.n.Add(1)
	}
	if c.ua != "" && req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", c.ua)
	}
	return c.base.RoundTrip(req)
}

func countingClient(name string) (*http.Client, *countingTransport) {
	tr := &countingTransport{base: http.DefaultTransport, ua: "jwt-rotor-acceptance " + name}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, tr
}

// --- go-jose v4 behind a cache that follows Cache-Control and ETag ---

// headerCache is a JWKS cache of the kind a careful service writes around
// go-jose: it keeps the key set for the response's max-age, revalidates with
// If-None-Match (a 304 renews the copy), serves the old copy for
// stale-if-error while every source fails, and never refetches on an
// unknown kid (so it depends on the issuer publishing keys ahead). With
// several URLs it tries them in order, like a client-side load balancer.
type headerCache struct {
	urls []string
	hc   *http.Client

	mu         sync.Mutex
	set        jose.JSONWebKeySet
	have       bool
	etag       string
	freshUntil time.Time
	staleUntil time.Time

	requests, notModified, failures atomic.Int64
}

func newHeaderCache(hc *http.Client, urls ...string) *headerCache {
	return &headerCache{urls: urls, hc: hc}
}

// keys returns the cached set, refreshing it first when max-age has passed.
func (c *headerCache) keys(ctx context.Context) (jose.JSONWebKeySet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.have && now.Before(c.freshUntil) {
		return c.set, nil
	}
	err := c.refresh(ctx)
	if err != nil {
		c.failures.Add(1)
		if c.have && time.Now().Before(c.staleUntil) {
			return c.set, nil
		}
		return jose.JSONWebKeySet{}, err
	}
	return c.set, nil
}

func (c *headerCache) refresh(ctx context.Context) error {
	var errs []error
	for _, u := range c.urls {
		err := c.fetch(ctx, u)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (c *headerCache) fetch(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if c.have && c.etag != "" {
		req.Header.Set("If-None-Match", c.etag)
	}
	c.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	received := time.Now()
	switch {
	case resp.StatusCode == http.StatusNotModified && c.have:
		c.notModified.Add(1)
	case resp.StatusCode == http.StatusOK:
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(body, &set); err != nil {
			return fmt.Errorf("GET %s: not a JWK Set: %w", u, err)
		}
		c.set, c.have = set, true
		c.etag = resp.Header.Get("ETag")
	default:
		return fmt.Errorf("GET %s: status %d: %.200s", u, resp.StatusCode, body)
	}
	cc := parseCacheControl(resp.Header.Get("Cache-Control"))
	maxAge, err := cc.seconds("max-age")
	if err != nil {
		maxAge = 0
	}
	staleIfError, err := cc.seconds("stale-if-error")
	if err != nil {
		staleIfError = 0
	}
	c.freshUntil = received.Add(time.Duration(maxAge) * time.Second)
	c.staleUntil = c.freshUntil.Add(time.Duration(staleIfError) * time.Second)
	return nil
}

type joseVerifier struct {
	cache *headerCache
	c     verifierConfig
}

func startJoseCache(ctx context.Context, c verifierConfig) (jwksVerifier, error) {
	hc, _ := countingClient(c.name)
	v := &joseVerifier{cache: newHeaderCache(hc, c.jwksURL), c: c}
	if _, err := v.cache.keys(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *joseVerifier) verify(ctx context.Context, token string) (string, error) {
	return verifyJose(ctx, v.cache, v.c, token)
}

// verifyJose checks a token with go-jose against a header cache.
func verifyJose(ctx context.Context, cache *headerCache, c verifierConfig, token string) (string, error) {
	tok, err := josejwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(c.alg)})
	if err != nil {
		return "", err
	}
	if len(tok.Headers) != 1 {
		return "", fmt.Errorf("%d signatures", len(tok.Headers))
	}
	kid := tok.Headers[0].KeyID
	set, err := cache.keys(ctx)
	if err != nil {
		return kid, fmt.Errorf("JWKS: %w", err)
	}
	keys := set.Key(kid)
	if len(keys) != 1 {
		return kid, fmt.Errorf("kid %q is not in the cached JWKS (%d keys)", kid, len(set.Keys))
	}
	if keys[0].Algorithm != c.alg {
		return kid, fmt.Errorf("JWK %s has alg %q, want %q", kid, keys[0].Algorithm, c.alg)
	}
	var claims josejwt.Claims
	if err := tok.Claims(keys[0].Key, &claims); err != nil {
		return kid, err
	}
	err = claims.ValidateWithLeeway(josejwt.Expected{
		Issuer:      c.issuer,
		AnyAudience: josejwt.Audience{c.audience},
		Time:        time.Now(),
	}, 2*time.Second)
	if err != nil {
		return kid, err
	}
	if claims.Expiry == nil {
		return kid, errors.New("no exp")
	}
	return kid, nil
}

func (v *joseVerifier) fetches() int64 { return v.cache.requests.Load() }
func (v *joseVerifier) close()         {}

// --- keyfunc v3 (jwkset storage) with golang-jwt v5 ---

type keyfuncVerifier struct {
	kf     keyfunc.Keyfunc
	cancel context.CancelFunc
	tr     *countingTransport
	c      verifierConfig
}

func startKeyfunc(ctx context.Context, c verifierConfig) (jwksVerifier, error) {
	return startKeyfuncURLs(ctx, c, []string{c.jwksURL})
}

func startKeyfuncURLs(ctx context.Context, c verifierConfig, urls []string) (jwksVerifier, error) {
	hc, tr := countingClient(c.name)
	ctx, cancel := context.WithCancel(ctx)
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, urls, keyfunc.Override{
		Client:          hc,
		HTTPTimeout:     5 * time.Second,
		RefreshInterval: c.interval,
		// An unknown kid may trigger one extra refresh per interval, and
		// a verification never waits for that budget.
		RefreshUnknownKID: rate.NewLimiter(rate.Every(c.interval), 1),
		RateLimitWaitMax:  time.Millisecond,
		RefreshErrorHandlerFunc: func(string) func(context.Context, error) {
			return func(context.Context, error) {}
		},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	return &keyfuncVerifier{kf: kf, cancel: cancel, tr: tr, c: c}, nil
}

func (v *keyfuncVerifier) verify(_ context.Context, token string) (string, error) {
	kid := ""
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{v.c.alg}),
		jwt.WithIssuer(v.c.issuer),
		jwt.WithAudience(v.c.audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(2*time.Second),
	).Parse(token, func(tok *jwt.Token) (any, error) {
		kid, _ = tok.Header["kid"].(string)
		return v.kf.Keyfunc(tok)
	})
	return kid, err
}

func (v *keyfuncVerifier) fetches() int64 { return v.tr.n.Load() }
func (v *keyfuncVerifier) close()         { v.cancel() }

// --- go-oidc v3 through the discovery document ---

type oidcVerifier struct {
	v      *oidc.IDTokenVerifier
	tr     *countingTransport
	cancel context.CancelFunc
}

func startOIDC(ctx context.Context, c verifierConfig) (jwksVerifier, error) {
	hc, tr := countingClient(c.name)
	ctx, cancel := context.WithCancel(ctx)
	pctx := oidc.ClientContext(ctx, hc)
	provider, err := oidc.NewProvider(pctx, c.issuer)
	if err != nil {
		cancel()
		return nil, err
	}
	v := provider.VerifierContext(pctx, &oidc.Config{
		ClientID:             c.audience,
		SupportedSigningAlgs: []string{c.alg},
	})
	// go-oidc fetches the JWKS only when a token names a kid it lacks. A
	// token signed by a throwaway key makes it fetch now, so that, like the
	// other verifiers, it holds the key set as it is before the test starts.
	prime, err := throwawayToken(c)
	if err != nil {
		cancel()
		return nil, err
	}
	if _, err := v.Verify(ctx, prime); err == nil {
		cancel()
		return nil, errors.New("go-oidc accepted a token signed by a key the issuer never published")
	}
	return &oidcVerifier{v: v, tr: tr, cancel: cancel}, nil
}

// throwawayToken signs a token with the right claims by a key that is in
// no JWKS.
func throwawayToken(c verifierConfig) (string, error) {
	var key any
	var err error
	switch c.alg {
	case "RS256":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return "", fmt.Errorf("no throwaway key for %s", c.alg)
	}
	if err != nil {
		return "", err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(c.alg), Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "saf-throwaway"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return josejwt.Signed(signer).Claims(josejwt.Claims{
		Issuer:   c.issuer,
		Subject:  "saf-throwaway",
		Audience: josejwt.Audience{c.audience},
		IssuedAt: josejwt.NewNumericDate(now),
		Expiry:   josejwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
}

func (v *oidcVerifier) verify(ctx context.Context, token string) (string, error) {
	kid := tokenKid(token)
	_, err := v.v.Verify(ctx, token)
	return kid, err
}

func (v *oidcVerifier) fetches() int64 { return v.tr.n.Load() }
func (v *oidcVerifier) close()         { v.cancel() }

// --- Node's jose (createRemoteJWKSet + jwtVerify) in a child process ---

type nodeVerifier struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex // guards stdin writes and waiters
	nextID int64
	wait   map[string]chan nodeResult
	done   chan struct{}
	stderr *tailBuffer
}

type nodeResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Kid   string `json:"kid"`
	Error string `json:"error"`
	Code  string `json:"code"`
	Ready bool   `json:"ready"`
}

// nodeDir is tests/node, where `make test` runs `npm ci`.
func nodeDir() (string, error) {
	dir, err := filepath.Abs("node")
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "jose", "package.json")); err != nil {
		return "", fmt.Errorf("the Node verifier needs its packages: run `make test` (or `make node-deps`, which runs npm ci in tests/node) first: %w", err)
	}
	return dir, nil
}

func startNodeJose(ctx context.Context, c verifierConfig) (jwksVerifier, error) {
	dir, err := nodeDir()
	if err != nil {
		return nil, err
	}
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("the Node verifier needs node (20 or later) on PATH: %w", err)
	}
	cmd := exec.Command(nodeBin, "verify.mjs",
		"--jwks", c.jwksURL,
		"--issuer", c.issuer,
		"--audience", c.audience,
		"--alg", c.alg,
		"--cache-max-age-ms", strconv.FormatInt(c.interval.Milliseconds(), 10),
		// An unknown kid may reload the set once a second.
		"--cooldown-ms", "1000",
		"--prime",
	)
	cmd.Dir = dir
	testserver.SetChildAttrs(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	v := &nodeVerifier{cmd: cmd, stdin: stdin, wait: map[string]chan nodeResult{}, done: make(chan struct{}), stderr: &tailBuffer{}}
	cmd.Stderr = v.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		defer close(v.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		readyOnce := sync.OnceFunc(func() { close(ready) })
		for sc.Scan() {
			var r nodeResult
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				continue
			}
			if r.Ready {
				readyOnce()
				continue
			}
			v.mu.Lock()
			ch := v.wait[r.ID]
			delete(v.wait, r.ID)
			v.mu.Unlock()
			if ch != nil {
				ch <- r
			}
		}
		_ = cmd.Wait()
	}()
	select {
	case <-ready:
		return v, nil
	case <-v.done:
		return nil, fmt.Errorf("node verify.mjs exited during start: %s", v.stderr.String())
	case <-time.After(30 * time.Second):
		v.close()
		return nil, fmt.Errorf("node verify.mjs not ready after 30s: %s", v.stderr.String())
	case <-ctx.Done():
		v.close()
		return nil, ctx.Err()
	}
}

func (v *nodeVerifier) verify(ctx context.Context, token string) (string, error) {
	ch := make(chan nodeResult, 1)
	v.mu.Lock()
	v.nextID++
	id := strconv.FormatInt(v.nextID, 10)
	v.wait[id] = ch
	_, err := io.WriteString(v.stdin, id+" "+token+"\n")
	v.mu.Unlock()
	if err != nil {
		return tokenKid(token), fmt.Errorf("node verifier: %w (stderr: %s)", err, v.stderr.String())
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	select {
	case r := <-ch:
		if !r.OK {
			return r.Kid, fmt.Errorf("jose %s: %s", r.Code, r.Error)
		}
		return r.Kid, nil
	case <-v.done:
		return tokenKid(token), fmt.Errorf("node verifier exited: %s", v.stderr.String())
	case <-ctx.Done():
		v.mu.Lock()
		delete(v.wait, id)
		v.mu.Unlock()
		return tokenKid(token), fmt.Errorf("node verifier: no answer: %w", ctx.Err())
	}
}

// fetches is unknown from the outside; the plugin's verifiers report counts
// the node verifier's fetches by its id.
func (v *nodeVerifier) fetches() int64 { return -1 }

func (v *nodeVerifier) close() {
	v.mu.Lock()
	if v.stdin != nil {
		v.stdin.Close()
		v.stdin = nil
	}
	v.mu.Unlock()
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
		if v.cmd.Process != nil {
			_ = v.cmd.Process.Kill()
		}
		<-v.done
	}
}

// tailBuffer keeps the last few KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (s *tailBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, p...)
	if len(s.buf) > 4096 {
		s.buf = s.buf[len(s.buf)-4096:]
	}
	return len(p), nil
}

func (s *tailBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(string(s.buf))
}

// --- tallies ---

// verdictTally counts one verifier's outcomes.
type verdictTally struct {
	mu          sync.Mutex
	ok          int
	okLate      int
	lateSkipped int
	// excluded counts checks that pipeline.exclude took over (a token
	// of a key revoked since it was signed), at issue and late.
	excluded, excludedLate int
	failures               []string
}

func (s *verdictTally) exclude(late bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if late {
		s.excludedLate++
	} else {
		s.excluded++
	}
}

func (s *verdictTally) excludedCounts() (atIssue, late int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.excluded, s.excludedLate
}

func (s *verdictTally) skip() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lateSkipped++
}

func (s *verdictTally) skipped() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lateSkipped
}

func (s *verdictTally) record(late bool, what string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.failures = append(s.failures, what+": "+err.Error())
	case late:
		s.okLate++
	default:
		s.ok++
	}
}

func (s *verdictTally) counts() (ok, okLate int, failures []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ok, s.okLate, slices.Clone(s.failures)
}

// pipeline hands every token to every verifier twice: at once, and again
// lateMargin before it expires. One worker per verifier keeps each library
// seeing tokens in order and at its own pace.
type pipeline struct {
	ctx        context.Context
	vs         map[string]jwksVerifier
	lateMargin time.Duration
	tallies    map[string]*verdictTally
	queues     map[string]chan job
	workers    sync.WaitGroup
	late       sync.WaitGroup
	tokens     atomic.Int64
	// exclude, when set, judges a check itself instead of the tally: it
	// returns true for a token that is no longer expected to verify (its
	// key was revoked), and reports what it must of the outcome.
	exclude func(verifier string, s signedToken, late bool, err error) bool
}

type job struct {
	tok  signedToken
	late bool
}

func newPipeline(ctx context.Context, vs map[string]jwksVerifier, lateMargin time.Duration) *pipeline {
	p := &pipeline{ctx: ctx, vs: vs, lateMargin: lateMargin, tallies: map[string]*verdictTally{}, queues: map[string]chan job{}}
	for name, v := range vs {
		p.tallies[name] = &verdictTally{}
		q := make(chan job, 8192)
		p.queues[name] = q
		p.workers.Add(1)
		go func(name string, v jwksVerifier) {
			defer p.workers.Done()
			for j := range q {
				// A late check that starts within a second of exp, because
				// this worker fell behind, would test the clock rather than
				// the keys: it is counted apart.
				if j.late && !time.Now().Before(time.Unix(j.tok.exp-1, 0)) {
					p.tallies[name].skip()
					continue
				}
				kid, err := v.verify(ctx, j.tok.token)
				if err == nil && kid != j.tok.kid {
					err = fmt.Errorf("verified with kid %q, signed with %q", kid, j.tok.kid)
				}
				if p.exclude != nil && p.exclude(name, j.tok, j.late, err) {
					p.tallies[name].exclude(j.late)
					continue
				}
				what := fmt.Sprintf("token #%d (kid %s, iat %d, exp %d) at %s", j.tok.seq, j.tok.kid, j.tok.iat, j.tok.exp, time.Now().Format("15:04:05.000"))
				if j.late {
					what = "late check of " + what
				}
				p.tallies[name].record(j.late, what, err)
			}
		}(name, v)
	}
	return p
}

func (p *pipeline) dispatch(s signedToken) {
	p.tokens.Add(1)
	for _, q := range p.queues {
		q <- job{tok: s}
	}
	p.late.Add(1)
	time.AfterFunc(time.Until(time.Unix(s.exp, 0).Add(-p.lateMargin)), func() {
		defer p.late.Done()
		for _, q := range p.queues {
			q <- job{tok: s, late: true}
		}
	})
}

// finish waits for the late checks and the workers.
func (p *pipeline) finish() {
	p.late.Wait()
	for _, q := range p.queues {
		close(q)
	}
	p.workers.Wait()
}

// judge requires every verifier to have verified every token twice with no
// failure, and returns a table of the numbers. fetches gives a verifier's
// JWKS fetch count where the library cannot count it.
func (p *pipeline) judge(t *testing.T, fetches func(name string) int64) string {
	t.Helper()
	n := int(p.tokens.Load())
	var names []string
	for name := range p.vs {
		names = append(names, name)
	}
	slices.Sort(names)
	var table strings.Builder
	fmt.Fprintf(&table, "%-16s %8s %8s %8s %9s %9s %9s\n", "verifier", "tokens", "ok", "ok-late", "late-skip", "failures", "fetches")
	for _, name := range names {
		ok, okLate, failures := p.tallies[name].counts()
		skipped := p.tallies[name].skipped()
		excluded, excludedLate := p.tallies[name].excludedCounts()
		f := p.vs[name].fetches()
		if f < 0 && fetches != nil {
			f = fetches(name)
		}
		fetched := "n/a"
		if f >= 0 {
			fetched = strconv.FormatInt(f, 10)
		}
		fmt.Fprintf(&table, "%-16s %8d %8d %8d %9d %9d %9s\n", name, n, ok, okLate, skipped, len(failures), fetched)
		for i, msg := range failures {
			if i == 5 {
				t.Errorf("%s: %d more failures", name, len(failures)-5)
				break
			}
			t.Errorf("%s: %s", name, msg)
		}
		if ok+excluded != n || okLate+skipped+excludedLate != n {
			t.Errorf("%s verified %d tokens at issue and %d before expiry (%d late checks skipped, %d and %d checks of revoked keys' tokens excluded), want %d and %d",
				name, ok, okLate, skipped, excluded, excludedLate, n-excluded, n-excludedLate)
		}
		if skipped*10 > n {
			t.Errorf("%s: %d of %d late checks started too close to exp to mean anything: the verifier fell behind", name, skipped, n)
		}
	}
	return table.String()
}
