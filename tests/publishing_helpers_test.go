package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// Helpers of the publishing acceptance tests: the stores the plugin
// publishes to as verifiers see them, a watcher of a copy's public URL,
// and the bounds docs/publishing.md gives.

const (
	// copyPrefix is where the tests' publishers write in their store.
	copyPrefix = "issuer/"
	// publishPassEvery and publishAttempt are the upload pass interval and
	// the cut-off of one attempt (docs/publishing.md, "When").
	publishPassEvery = time.Second
	publishAttempt   = 8 * time.Second
)

// revokedGoneBound is how long after a revocation a revoked kid may stay
// in a reachable copy (docs/publishing.md, "How soon"): the next pass may
// find an upload of the previous copy under way for up to an attempt, and
// the pass after it writes the new copy within another.
const revokedGoneBound = 2 * freshPassBound

// freshPassBound is the same for a plugin that has just started, with no
// upload under way: a pass and an attempt.
const freshPassBound = publishPassEvery + publishAttempt

// rejectionBound is how long after a revocation a verifier of kind k,
// reading copies whose max-age is at most maxAge, may still accept a
// token of the revoked key: the copy drops it within revokedGoneBound; a
// copy fetched just before is fresh for max-age more; the library may then
// take its own staleness to look again.
func rejectionBound(k verifierKind, maxAge time.Duration) time.Duration {
	return revokedGoneBound + maxAge + k.staleness(maxAge)
}

// publishedStore is a store the plugin publishes to, seen from outside.
type publishedStore struct {
	name string
	// fields are the publisher's settings, public_url and prefix aside.
	fields map[string]any
	// base is the public URL of copyPrefix, with its final slash: the
	// publisher's public_url, and the issuer without that slash.
	base string
}

func s3Published(t *testing.T) (publishedStore, *testserver.S3Server) {
	t.Helper()
	s := testserver.S3(t)
	return publishedStore{name: "s3", base: s.PublicURL(copyPrefix), fields: map[string]any{
		"type": "s3", "bucket": s.Bucket, "region": s.Region, "endpoint": s.Endpoint, "path_style": true,
		"access_key_id": s.AccessKey, "secret_access_key": s.SecretKey,
	}}, s
}

// webdavPublished starts Apache with Cache-Control: max-age=maxAge on
// every response, standing for the max-age the plugin would have sent:
// mod_dav keeps no header of a PUT.
func webdavPublished(t *testing.T, maxAge int) (publishedStore, *testserver.WebDAVServer) {
	t.Helper()
	s := testserver.WebDAVWith(t, testserver.WebDAVOptions{CacheControl: fmt.Sprintf("public, max-age=%d", maxAge)})
	return publishedStore{name: "webdav", base: s.URL + copyPrefix, fields: map[string]any{
		"type": "webdav", "url": s.URL, "username": s.Username, "password": s.Password,
	}}, s
}

func (s publishedStore) issuer() string  { return strings.TrimSuffix(s.base, "/") }
func (s publishedStore) jwksURL() string { return s.base + ".well-known/jwks.json" }

// publisher is the body of publishers/<name>: the store's fields, the
// prefix, and public_url = issuer + "/" so that the discovery document is
// published too.
func (s publishedStore) publisher(extra map[string]any) map[string]any {
	out := map[string]any{"prefix": copyPrefix, "public_url": s.base}
	for k, v := range s.fields {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// getCopy reads a URL as a verifier does.
func getCopy(ctx context.Context, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, err
}

// kidsOf lists the kids of a JWKS body (nil for something else).
func kidsOf(body []byte) []string {
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if json.Unmarshal(body, &set) != nil {
		return nil
	}
	kids := []string{}
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

// copyWatcher polls a copy's public URL until stopped and checks, at
// every read, that a banned (revoked) kid, once a read begun after its
// ban has shown the copy without it, never comes back.
type copyWatcher struct {
	t   *testing.T
	url string

	mu         sync.Mutex
	reads      int
	failed     int
	last       []byte
	lastAt     time.Time
	banned     map[string]time.Time
	goneAt     map[string]time.Time
	reappeared []string
	stop       context.CancelFunc
	done       chan struct{}
}

func watchCopy(t *testing.T, url string, every time.Duration) *copyWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &copyWatcher{t: t, url: url, banned: map[string]time.Time{}, goneAt: map[string]time.Time{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for ctx.Err() == nil {
			start := time.Now()
			status, body, err := getCopy(ctx, url)
			w.observe(start, status, body, err)
			select {
			case <-ctx.Done():
			case <-time.After(every):
			}
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *copyWatcher) close() {
	w.stop()
	<-w.done
}

func (w *copyWatcher) observe(start time.Time, status int, body []byte, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil || status != http.StatusOK {
		w.failed++
		return
	}
	kids := kidsOf(body)
	if kids == nil {
		w.failed++
		return
	}
	w.reads++
	w.last, w.lastAt = body, start
	for kid, at := range w.banned {
		if !start.After(at) {
			continue
		}
		has := slices.Contains(kids, kid)
		gone, wasGone := w.goneAt[kid]
		switch {
		case !has && !wasGone:
			w.goneAt[kid] = start
		case has && wasGone:
			w.reappeared = append(w.reappeared, fmt.Sprintf("revoked kid %s, gone from %s since %s, is back in a read begun at %s",
				kid, w.url, gone.Format("15:04:05.000"), start.Format("15:04:05.000")))
		}
	}
}

// ban records that kid was revoked at at (the time the revocation was
// answered).
func (w *copyWatcher) ban(kid string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.banned[kid] = at
}

// awaitGone waits until a read begun after kid's ban no longer holds it
// and returns how long after the ban that read began; it fails the test
// when that takes longer than bound.
func (w *copyWatcher) awaitGone(t *testing.T, kid string, bound time.Duration) time.Duration {
	t.Helper()
	w.mu.Lock()
	bannedAt := w.banned[kid]
	w.mu.Unlock()
	deadline := bannedAt.Add(bound + 30*time.Second)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		gone, ok := w.goneAt[kid]
		w.mu.Unlock()
		if ok {
			took := gone.Sub(bannedAt)
			if took > bound {
				t.Errorf("revoked kid %s left %s %s after the revocation, bound %s", kid, w.url, took.Round(10*time.Millisecond), bound)
			}
			return took
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("revoked kid %s still in %s %s after the revocation", kid, w.url, time.Since(bannedAt).Round(time.Second))
	return 0
}

// awaitBody waits until a read begun after since returns want.
func (w *copyWatcher) awaitBody(t *testing.T, since time.Time, want func() []byte, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var wanted []byte
	for time.Now().Before(deadline) {
		wanted = want()
		w.mu.Lock()
		last, at := w.last, w.lastAt
		w.mu.Unlock()
		if at.After(since) && bytes.Equal(last, wanted) {
			return at.Sub(since)
		}
		time.Sleep(100 * time.Millisecond)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Fatalf("%s does not serve the plugin's JWKS %s after %s:\ncopy:   %.300s\nserved: %.300s", w.url, timeout, since.Format("15:04:05.000"), w.last, wanted)
	return 0
}

// verdict fails the test for every banned kid that came back, and
// returns the number of good reads.
func (w *copyWatcher) verdict(t *testing.T) int {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, r := range w.reappeared {
		if i == 5 {
			t.Errorf("and %d more reads with a revoked kid back", len(w.reappeared)-5)
			break
		}
		t.Error(r)
	}
	if w.reads == 0 {
		t.Errorf("no read of %s succeeded", w.url)
	}
	return w.reads
}

// servedJWKS is the JWKS the plugin serves at addr/v1/<mount>/jwks (nil
// while Vault does not answer).
func servedJWKS(addr, mountPath string) []byte {
	status, body, err := getCopy(context.Background(), addr+"/v1/"+mountPath+"/jwks")
	if err != nil || status != http.StatusOK {
		return nil
	}
	return body
}

// kill9Dev kills a dev server with SIGKILL and then the plugin processes
// it had started (they outlive it), as a power cut would.
func kill9Dev(t *testing.T, srv *testserver.DevServer) {
	t.Helper()
	if err := syscall.Kill(srv.PID(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", srv.PID(), err)
	}
	for _, pid := range testserver.PluginPIDs(filepath.Join(srv.Dir, "plugins")) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if status, _, err := getCopy(context.Background(), srv.Addr+"/v1/sys/health"); err != nil && status == 0 {
			return
		}
	}
	t.Fatalf("Vault at %s still answers after kill -9", srv.Addr)
}

// lastBody is the body of the latest good read.
func (w *copyWatcher) lastBody() []byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// goneTime is when a read begun after kid's ban first lacked it.
func (w *copyWatcher) goneTime(kid string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	at, ok := w.goneAt[kid]
	return at, ok
}

// storeProxy forwards HTTP to a store and records every write (any
// method but GET, HEAD and OPTIONS) with the Raft node whose plugin
// process opened the connection, found through /proc: the socket's inode
// from /proc/net/tcp, then the process of the node's plugin directory
// holding it. The Host header is kept, so S3 signatures still match.
type storeProxy struct {
	url   string
	srv   *httptest.Server
	nodes []*testserver.RaftNode

	mu     sync.Mutex
	owners map[string]int // remote address -> node index (-1 unknown)
	writes []proxyWrite
}

type proxyWrite struct {
	at     time.Time
	method string
	path   string
	node   int
	status int // the store's answer
}

// statusRecorder keeps the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func newStoreProxy(t *testing.T, target string, nodes []*testserver.RaftNode) *storeProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &storeProxy{nodes: nodes, owners: map[string]int{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host
	}}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			rp.ServeHTTP(w, r)
			return
		}
		at := time.Now()
		p.mu.Lock()
		node := p.owners[r.RemoteAddr]
		p.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		rp.ServeHTTP(rec, r)
		p.mu.Lock()
		p.writes = append(p.writes, proxyWrite{at: at, method: r.Method, path: r.URL.Path, node: node, status: rec.status})
		p.mu.Unlock()
	}))
	p.srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		if s != http.StateNew {
			return
		}
		owner := p.owner(c)
		p.mu.Lock()
		p.owners[c.RemoteAddr().String()] = owner
		p.mu.Unlock()
	}
	p.srv.Start()
	p.url = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

// owner finds the node whose plugin holds the client end of c.
func (p *storeProxy) owner(c net.Conn) int {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return -1
	}
	raw, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return -1
	}
	want := fmt.Sprintf(":%04X", remote.Port)
	peer := fmt.Sprintf(":%04X", local.Port)
	inode := ""
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) > 9 && strings.HasSuffix(f[1], want) && strings.HasSuffix(f[2], peer) {
			inode = f[9]
			break
		}
	}
	if inode == "" {
		return -1
	}
	link := "socket:[" + inode + "]"
	for i, n := range p.nodes {
		for _, pid := range testserver.PluginPIDs(n.PluginDir) {
			fds, _ := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
			for _, fd := range fds {
				if l, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "fd", fd.Name())); err == nil && l == link {
					return i
				}
			}
		}
	}
	return -1
}

// writesSince returns the writes that reached the proxy at or after t.
func (p *storeProxy) writesSince(t time.Time) []proxyWrite {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxyWrite
	for _, w := range p.writes {
		if !w.at.Before(t) {
			out = append(out, w)
		}
	}
	return out
}
