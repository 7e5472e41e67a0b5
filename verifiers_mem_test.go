package jwtrotor

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// monClientShape is what one tracked client sends: its verifier id (empty
// for an anonymous fetcher), address, User-Agent and the ETag it presents.
type monClientShape func(i int) (verifier, addr, ua, presented string)

// monTypicalClient looks like a verifier library in the field: a declared id
// on one client in four, an IPv4 address with a port, a library User-Agent
// and the ETag of the document it holds.
func monTypicalClient(etag string) monClientShape {
	return func(i int) (string, string, string, string) {
		verifier := ""
		if i%4 == 0 {
			verifier = fmt.Sprintf("payments-api-%05d", i)
		}
		addr := fmt.Sprintf("10.%d.%d.%d:%d", i>>16&0xff, i>>8&0xff, i&0xff, 30000+i%20000)
		ua := fmt.Sprintf("Go-http-client/1.1 jwks-refresher/%d.%d", i%7, i%13)
		return verifier, addr, ua, etag
	}
}

// monLongestClient fills every remembered field to the tracker's clip
// length, the most a single client can cost with one document.
func monLongestClient(i int) (string, string, string, string) {
	pad := func(prefix string) string {
		s := fmt.Sprintf("%s-%08d-", prefix, i)
		return s + strings.Repeat("x", maxFieldLen-len(s))
	}
	return pad("verifier"), pad("addr"), pad("ua"), `"` + pad("etag")[2:] + `"`
}

// monBytesPerClient observes n distinct clients fetching the same document
// and returns the heap growth per client, measured after a full collection
// before and after, with the tracker still reachable.
func monBytesPerClient(n int, shape monClientShape) (perClient float64, tracked int) {
	kids := []string{"kid-active-0000000000000000000000000000000000", "kid-pending-000000000000000000000000000000000"}
	served := `"tQWnfRtTQ-VGocxI5zcADi3z"`
	// Build the inputs first so their own allocations are not counted.
	type input struct{ verifier, addr, ua, presented string }
	in := make([]input, n)
	for i := range in {
		v, a, u, p := shape(i)
		in[i] = input{v, a, u, p}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	tr := newVerifierTracker()
	for i, c := range in {
		// Fresh copies, as a request brings them: what the tracker keeps
		// of them is counted, the rest is garbage.
		tr.observe(strings.Clone(c.verifier), strings.Clone(c.addr), strings.Clone(c.ua), strings.Clone(c.presented),
			allScope, served, kids, int64(1_700_000_000+i), false)
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	tr.mu.Lock()
	tracked = len(tr.clients)
	tr.mu.Unlock()
	runtime.KeepAlive(tr)
	runtime.KeepAlive(in)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n), tracked
}

// TestMonitoringTrackerMemoryPerClient measures what the verifier report
// costs in memory: 10,000 distinct clients (the tracker's capacity), each
// fetching once. Its figures are the ones docs/operations.md gives.
func TestMonitoringTrackerMemoryPerClient(t *testing.T) {
	const n = maxTrackedClients
	for _, tc := range []struct {
		name  string
		shape monClientShape
		limit float64
	}{
		{"typical", monTypicalClient(`"tQWnfRtTQ-VGocxI5zcADi3z"`), 4 << 10},
		// Four fields clipped at 256 bytes each, plus the key and the
		// per-client map: still bounded, if larger.
		{"longest fields", monLongestClient, 8 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			per, tracked := monBytesPerClient(n, tc.shape)
			if tracked != n {
				t.Fatalf("tracker holds %d clients after %d distinct fetchers, want %d", tracked, n, n)
			}
			t.Logf("%s: %d clients tracked, %.0f bytes per client, %.2f MiB in all", tc.name, tracked, per, per*float64(n)/(1<<20))
			if per <= 0 {
				t.Fatalf("heap did not grow (%.0f bytes per client): the measurement is broken", per)
			}
			if per > tc.limit {
				t.Errorf("%.0f bytes per tracked client, want at most %.0f", per, tc.limit)
			}
		})
	}
}

// BenchmarkMonitoringTrackerObserve reports the time of one observation of a
// new client at capacity (so each one evicts the least recently seen) and
// the heap held per tracked client.
func BenchmarkMonitoringTrackerObserve(b *testing.B) {
	per, _ := monBytesPerClient(maxTrackedClients, monTypicalClient(`"tQWnfRtTQ-VGocxI5zcADi3z"`))
	shape := monTypicalClient(`"tQWnfRtTQ-VGocxI5zcADi3z"`)
	kids := []string{"a", "b"}
	tr := newVerifierTracker()
	for i := range maxTrackedClients {
		v, a, u, p := shape(i)
		tr.observe(v, a, u, p, allScope, `"e"`, kids, int64(i), false)
	}
	inputs := make([][4]string, 4096)
	for i := range inputs {
		v, a, u, p := shape(maxTrackedClients + i)
		inputs[i] = [4]string{v, a, u, p}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := inputs[i%len(inputs)]
		// No verifier id: keyed by address and User-Agent, each one new.
		tr.observe("", c[1]+strconv.Itoa(i), c[2], c[3], allScope, `"e"`, kids, int64(maxTrackedClients+i), false)
	}
	b.StopTimer()
	b.ReportMetric(per, "heap-bytes/client")
}
