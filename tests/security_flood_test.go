package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

const (
	floodRequests = 20000
	floodWorkers  = 8
	// floodRate paces the flood to about 20s on a fast machine: long
	// enough to be a sustained load. A slower machine takes longer; the
	// flood is bounded by its count, never cut short by a clock.
	floodRate = 1000 // requests per second
	// floodMinSigns signatures complete while the flood runs: its last
	// request waits for them, so the floor holds however fast the flood is.
	floodMinSigns = 10
	mib           = 1 << 20
)

// TestSecurityFlood hammers the unauthenticated JWKS on loopback with
// 20,000 requests (at up to 1,000 a second), with a random If-None-Match, a
// random verifier= id and a random User-Agent on every request, so that
// every request is a fetcher the plugin has never seen. It shows that the
// plugin's memory stays bounded (its verifier tracker evicts instead of
// growing, and the plugin process's resident memory levels off), that
// signing keeps working during the flood (at least floodMinSigns
// signatures begin after its first request and end before its last), and
// that the rate-limit quotas of docs/operations.md make Vault answer 429
// beyond their rate.
func TestSecurityFlood(t *testing.T) {
	sec := startDedicated(t, testserver.DevOptions{LogLevel: "warn"})
	m := sec.mount(t, "jwt-flood", map[string]any{"jwks_max_age": 60})
	sec.ring(t, m, "f", map[string]any{"algorithm": "ES256", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	sec.root.mustWrite(t, m.p("roles/f"), map[string]any{"key": "f", "audiences": "api"})
	pid := sec.pluginPID(t)

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * floodWorkers}}
	paths := []string{"jwks", "jwks", "jwks", "jwks", "jwks", "jwks", "jwks/f", ".well-known/jwks.json"}
	fetch := func(i int) (int, error) {
		req, err := http.NewRequest(http.MethodGet, sec.root.url(m.p(paths[i%len(paths)]))+"?verifier="+randomString(8), nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("If-None-Match", `"`+randomString(18)+`"`)
		req.Header.Set("User-Agent", "flood/"+randomString(12))
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	// Warm up, then take the baseline.
	for i := 0; i < 500; i++ {
		if code, err := fetch(i); err != nil || code != http.StatusOK {
			t.Fatalf("warm-up fetch %d: status %d, %v", i, code, err)
		}
	}
	baseRSS, _ := processRSS(t, pid)

	var (
		next        atomic.Int64
		mu          sync.Mutex
		statuses    = map[int]int{}
		errs        []error
		midRSS      atomic.Int64
		peakRSS     atomic.Int64
		lastSent    atomic.Bool  // the flood's last request has gone out
		signsDuring atomic.Int64 // signatures begun after the first request, ended before the last
		signFailed  atomic.Bool
	)
	peakRSS.Store(baseRSS)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < floodWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > floodRequests {
					return
				}
				if i == floodRequests {
					// The flood ends only once signing has been shown to
					// work during it (or failed, which fails the test); the
					// guard only keeps a hung signer from hanging the test.
					for guard := time.Now().Add(2 * time.Minute); signsDuring.Load() < floodMinSigns && !signFailed.Load() && time.Now().Before(guard); {
						time.Sleep(50 * time.Millisecond)
					}
					lastSent.Store(true)
				}
				// Request i goes out no earlier than i/rate after the start.
				if wait := time.Until(start.Add(time.Duration(i) * time.Second / floodRate)); wait > 0 {
					time.Sleep(wait)
				}
				code, err := fetch(i)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					statuses[code]++
				}
				mu.Unlock()
				if i == floodRequests/2 {
					rss, _ := processRSS(t, pid)
					midRSS.Store(rss)
				}
			}
		}()
	}
	floodDone := make(chan struct{})
	go func() { wg.Wait(); close(floodDone) }()

	// Sample memory, and sign as a workload would, until the flood ends. A
	// signature counts as during the flood by the flood's own requests: it
	// began once the first had been taken and ended before the last went.
	signer := newVaultClient(sec.root.addr, sec.signer.token)
	var tokens []string
	signFailures := 0
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
flood:
	for {
		select {
		case <-floodDone:
			break flood
		case <-tick.C:
			if rss, _ := processRSS(t, pid); rss > peakRSS.Load() {
				peakRSS.Store(rss)
			}
			began := next.Load() > 0
			resp, err := signer.call(context.Background(), http.MethodPost, m.p("sign/f"), map[string]any{})
			if err != nil || resp.Status != http.StatusOK {
				signFailures++
				signFailed.Store(true)
				t.Errorf("sign during the flood: %v %v", err, resp)
				continue
			}
			if began && !lastSent.Load() {
				signsDuring.Add(1)
			}
			tokens = append(tokens, str(t, resp.Data, "token"))
		}
	}
	elapsed := time.Since(start)
	endRSS, hwm := processRSS(t, pid)
	sent := 0
	for _, n := range statuses {
		sent += n
	}
	sent += len(errs)
	t.Logf("flood: %d requests in %s by %d workers (%v; %d transport errors); %d signatures during it, %d failed",
		sent, elapsed.Round(time.Millisecond), floodWorkers, statuses, len(errs), signsDuring.Load(), signFailures)
	t.Logf("plugin pid %d resident memory: %.1f MiB before, %.1f MiB at the midpoint, %.1f MiB after, %.1f MiB peak sampled, %.1f MiB high-water mark",
		pid, float64(baseRSS)/mib, float64(midRSS.Load())/mib, float64(endRSS)/mib, float64(peakRSS.Load())/mib, float64(hwm)/mib)
	if len(errs) > 0 {
		t.Fatalf("%d transport errors, first: %v", len(errs), errs[0])
	}
	if statuses[http.StatusOK] != sent {
		t.Fatalf("statuses %v: every fetch should be a 200 (no quota yet, and no random ETag matches)", statuses)
	}
	if sent != floodRequests {
		t.Fatalf("%d requests sent, want %d", sent, floodRequests)
	}
	if n := signsDuring.Load(); n < floodMinSigns || signFailures > 0 {
		t.Fatalf("%d signatures completed while the flood ran (want at least %d), %d failed", n, floodMinSigns, signFailures)
	}

	// The tokens signed during the flood verify against the JWKS.
	_, body := rawGet(t, http.MethodGet, sec.root.url(m.p("jwks")), nil)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatal(err)
	}
	for _, tok := range tokens {
		if _, _, err := verifyWithJose(tok, set, "ES256"); err != nil {
			t.Fatalf("a token signed during the flood does not verify: %v", err)
		}
	}

	// The tracker kept its bound and forgot the oldest fetchers.
	report := sec.root.mustRead(t, m.p("verifiers"))
	summary, _ := report.Data["summary"].(map[string]any)
	tracked := asInt(t, "tracked_clients", summary["tracked_clients"])
	capacity := asInt(t, "tracked_capacity", summary["tracked_capacity"])
	evicted := asInt(t, "evicted_clients", summary["evicted_clients"])
	distinct := int64(sent + 500)
	t.Logf("verifier tracker: %d clients tracked (capacity %d), %d evicted, of %d distinct fetchers", tracked, capacity, evicted, distinct)
	if tracked > capacity || tracked+evicted < distinct-10 || evicted == 0 {
		t.Fatalf("tracker: %d tracked of capacity %d, %d evicted, for %d distinct fetchers", tracked, capacity, evicted, distinct)
	}
	// Memory levels off once the tracker is full: the second half of the
	// flood, all of it beyond the tracker's capacity, adds a fraction of what
	// the first half did (unbounded tracking would add as much again).
	if mid := midRSS.Load(); mid == 0 {
		t.Fatalf("the flood did not reach its midpoint")
	} else {
		first, second := mid-baseRSS, endRSS-mid
		if limit := max(6*mib, first*2/5); second > limit {
			t.Fatalf("resident memory grew %.1f MiB in the first half of the flood and %.1f MiB in the second (limit %.1f MiB)",
				float64(first)/mib, float64(second)/mib, float64(limit)/mib)
		}
	}
	if grown := hwm - baseRSS; grown > 128*mib {
		t.Fatalf("resident memory peaked %.1f MiB above the baseline", float64(grown)/mib)
	}

	setQuotas(t, sec, m)
}

// setQuotas applies the rate-limit quotas of docs/operations.md, with their rate
// (20 per second), one at a time, and shows that each makes Vault answer 429
// on its paths beyond the rate, and only there.
func setQuotas(t *testing.T, sec *dedicatedServer, m *mount) {
	t.Helper()
	burst := func(rel string) map[int]int {
		t.Helper()
		out := map[int]int{}
		for i := 0; i < 400 && out[http.StatusTooManyRequests] < 20; i++ {
			resp, _ := rawGet(t, http.MethodGet, sec.root.url(m.p(rel))+"?verifier=burst", nil)
			out[resp.StatusCode]++
		}
		return out
	}
	sign := func() {
		t.Helper()
		if resp := sec.signer.write(t, m.p("sign/f"), map[string]any{}); resp.Status != http.StatusOK {
			t.Fatalf("signing under a JWKS quota: status %d: %s", resp.Status, resp.Body)
		}
	}
	quotas := []struct {
		name, path string
		limited    []string
		free       []string
	}{
		{"jwks", m.path + "/jwks", []string{"jwks"}, []string{"jwks/f", ".well-known/jwks.json"}},
		{"jwks-rings", m.path + "/jwks/*", []string{"jwks/f"}, []string{".well-known/openid-configuration"}},
		{"jwt-well-known", m.path + "/.well-known/*", []string{".well-known/jwks.json", ".well-known/openid-configuration"}, nil},
	}
	total429 := 0
	var lines []string
	for _, q := range quotas {
		sec.root.mustWrite(t, "sys/quotas/rate-limit/"+q.name, map[string]any{"path": q.path, "rate": 20, "interval": "1s"})
		got := sec.root.mustRead(t, "sys/quotas/rate-limit/"+q.name)
		if p := str(t, got.Data, "path"); p != q.path && p != q.path+"/" {
			t.Fatalf("quota %s stored path %q, want %q", q.name, p, q.path)
		}
		for _, rel := range q.limited {
			// Paths under one quota share its bucket: let it refill.
			time.Sleep(1100 * time.Millisecond)
			counts := burst(rel)
			lines = append(lines, fmt.Sprintf("quota %s (path=%s): GET %s -> %v", q.name, q.path, rel, counts))
			if counts[http.StatusTooManyRequests] == 0 || counts[http.StatusOK] == 0 || counts[http.StatusOK]+counts[http.StatusTooManyRequests] != sumValues(counts) {
				t.Fatalf("quota %s: a burst on %s got %v, want 200s up to the rate and then 429s", q.name, rel, counts)
			}
			total429 += counts[http.StatusTooManyRequests]
		}
		for _, rel := range q.free {
			counts := map[int]int{}
			for i := 0; i < 100; i++ {
				resp, _ := rawGet(t, http.MethodGet, sec.root.url(m.p(rel))+"?verifier=burst", nil)
				counts[resp.StatusCode]++
			}
			lines = append(lines, fmt.Sprintf("quota %s (path=%s): GET %s -> %v", q.name, q.path, rel, counts))
			if counts[http.StatusOK] != 100 {
				t.Fatalf("quota %s limits %s too: %v", q.name, rel, counts)
			}
		}
		sign()
	}
	sort.Strings(lines)
	for _, l := range lines {
		t.Log(l)
	}
	t.Logf("429 answers seen: %d", total429)
}

func sumValues(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// pluginPID is the pid of the plugin process Vault started for this
// server: a child of the Vault process running the plugin binary.
func (sec *dedicatedServer) pluginPID(t *testing.T) int {
	t.Helper()
	vaultPID := sec.server.PID()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("no /proc (the plugin's process is found and measured there, on Linux): %v", err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		fields := strings.Fields(rest)
		if len(fields) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(fields[1]); ppid != vaultPID {
			continue
		}
		exe, _ := os.Readlink("/proc/" + e.Name() + "/exe")
		if filepath.Base(exe) == pluginName || strings.HasPrefix(filepath.Base(strings.TrimSuffix(exe, " (deleted)")), pluginName) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one plugin process under vault pid %d, found %v", vaultPID, found)
	}
	return found[0]
}

// processRSS returns a process's resident and peak resident memory in bytes.
func processRSS(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("plugin process %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("%s: %q", name, value)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if rss == 0 {
		t.Fatalf("no VmRSS for pid %d", pid)
	}
	return rss, hwm
}
