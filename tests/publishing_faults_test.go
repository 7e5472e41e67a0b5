package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// The publishers' behaviour when their stores fail, against a real Vault
// with the real plugin: the real stores (versitygw for S3, Apache mod_dav
// for WebDAV, fake-gcs-server for Cloud Storage) stopped, restarted, given wrong credentials and robbed of an
// object, and small HTTP servers of the test's own where a failure is one
// the real stores do not produce on demand (a 500, a hang).

// TestPublishingFaultRequiredSinkHoldsActivation guards the publisher gate
// against a real store that is down: a required publisher (S3, Azure Blob
// Storage and Cloud Storage, each in a subtest of its own) whose store
// is stopped for longer than a pending key's lead holds that key's
// activation, never past max_activation_delay (ring "capped" activates
// exactly at its cap with the store still down), while the current key
// keeps signing; the verifier report (state, last_error_reason,
// behind_seconds), the metrics (jwt_rotor_publisher_failures_total,
// jwt_rotor_publisher_seconds_behind) and the key's gate_note name the
// publisher; once the store is restarted the held key of ring "held"
// activates before its cap. Then the WebDAV publisher, not required, loses
// its store: a key of ring "free" activates at its scheduled second, and
// only the report and the metrics show the lag.
func TestPublishingFaultRequiredSinkHoldsActivation(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"s3", "azure_blob", "gcs"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			runRequiredSinkHoldsActivation(t, kind)
		})
	}
}

// faultStopper is a real store a fault test stops and restarts.
type faultStopper interface {
	Stop()
	Restart()
}

func runRequiredSinkHoldsActivation(t *testing.T, kind string) {
	dav := testserver.WebDAV(t)
	var (
		req     faultStopper
		reqName string
		m       *mount
	)
	if kind == "s3" {
		s3 := testserver.S3(t)
		req, reqName = s3, "s3req"
		m = newMount(t, "pubfault-gate", map[string]any{"jwks_max_age": 5})
		faultS3Publisher(t, env.root, m, reqName, s3, "gate/", map[string]any{"required": true})
	} else if kind == "gcs" {
		gcs := startGCSStore(t)
		req, reqName = gcs, "gcsreq"
		m = newMount(t, "pubfault-gate-gcs", map[string]any{"jwks_max_age": 5})
		faultGCSPublisher(t, env.root, m, reqName, gcs, "gate/", map[string]any{"required": true})
	} else {
		az := testserver.Azure(t)
		req, reqName = az, "azreq"
		m = newMount(t, "pubfault-gate-azure", map[string]any{"jwks_max_age": 5})
		faultAzurePublisher(t, env.root, m, reqName, az, "gate/", map[string]any{"required": true})
	}
	faultDAVPublisher(t, env.root, m, "davopt", dav, "gate/", nil)
	for _, name := range []string{reqName, "davopt"} {
		faultWaitState(t, env.root, m, name, "current", 30*time.Second)
	}

	req.Stop()
	down := time.Now().Unix()
	const (
		cappedPeriod, cappedDelay = 20, 10
		heldPeriod, heldDelay     = 40, 40
	)
	k1Capped := createRing(t, m, "capped", map[string]any{"algorithm": "ES256", "rotation_period": cappedPeriod,
		"verification_ttl": 100, "max_activation_delay": cappedDelay})
	k1Held := createRing(t, m, "held", map[string]any{"algorithm": "ES256", "rotation_period": heldPeriod,
		"verification_ttl": 3 * heldPeriod, "max_activation_delay": heldDelay})
	for _, name := range []string{"capped", "held"} {
		createRole(t, m, name, map[string]any{"key": name, "audiences": []string{apiAudience}, "ttl": 30, "max_ttl": 30})
	}
	k2Capped, originCapped := faultPending(t, m, "capped")
	k2Held, originHeld := faultPending(t, m, "held")

	// Ring capped: the store stays down past the cap. Until then the
	// forced key signs; at origin + max_activation_delay the held key
	// activates, by the cap, not by the store.
	for time.Now().Unix() < originCapped+cappedDelay-1 {
		faultSignsWith(t, m, "capped", k1Capped)
		faultSignsWith(t, m, "held", k1Held)
		time.Sleep(time.Second)
	}
	monSleepUntil(time.Unix(originCapped+cappedDelay+2, 0))
	kc := monGateKey(t, m, "capped", k2Capped)
	if kc.state != "active" || kc.activateAt != originCapped+cappedDelay {
		t.Fatalf("ring capped: key %s is %s activating at %d; want active at its scheduled %d + max_activation_delay %d (the store is still down)", k2Capped, kc.state, kc.activateAt, originCapped, cappedDelay)
	}
	if !strings.Contains(kc.gateNote, reqName) || !strings.Contains(kc.gateNote, fmt.Sprintf("at most %ds", cappedDelay)) {
		t.Fatalf("ring capped: gate_note %q does not name publisher %s and the cap", kc.gateNote, reqName)
	}
	faultSignsWith(t, m, "capped", k2Capped)

	// Ring held: past its scheduled time, still held, and the forced key
	// still signs.
	for time.Now().Unix() < originHeld+2 {
		faultSignsWith(t, m, "held", k1Held)
		time.Sleep(500 * time.Millisecond)
	}
	kh := monGateKey(t, m, "held", k2Held)
	if kh.state != "pending" || kh.activateAt <= originHeld || kh.activateAt > originHeld+heldDelay {
		t.Fatalf("ring held: key %s is %s activating at %d; want pending, held past its scheduled %d by at most %ds", k2Held, kh.state, kh.activateAt, originHeld, heldDelay)
	}
	if !strings.Contains(kh.gateNote, "required publishers "+reqName) {
		t.Fatalf("ring held: gate_note %q does not name publisher %s", kh.gateNote, reqName)
	}
	faultSignsWith(t, m, "held", k1Held)
	rep := faultPub(t, env.root, m, reqName)
	if rep["state"] != "behind" || rep["last_error_reason"] != "unreachable" {
		t.Fatalf("report of %s while its store is down: %v; want state behind, last_error_reason unreachable", reqName, rep)
	}
	behind := asInt(t, "behind_seconds", rep["behind_seconds"])
	if behind < 1 {
		t.Fatalf("report of %s: behind_seconds %d while its copy lacks %s and %s", reqName, behind, k2Capped, k2Held)
	}
	if kids := stringList(rep["kids"]); slices.Contains(kids, k2Held) || slices.Contains(kids, k2Capped) {
		t.Fatalf("report of %s: its copy holds %v although the store was down since before those keys existed", reqName, kids)
	}
	fams := monScrape(t, m, http.Header{"X-Vault-Token": {rootToken}})
	failures, _ := monValue(fams, "jwt_rotor_publisher_failures_total", map[string]string{"publisher": reqName, "reason": "unreachable"})
	// Down for origin+2-down seconds with retries after 1, 2, 4, then
	// every 8 seconds: at least three attempts failed.
	if failures < 3 {
		t.Fatalf("jwt_rotor_publisher_failures_total{publisher=%s,reason=unreachable} = %v after %ds down; want at least 3", reqName, failures, time.Now().Unix()-down)
	}
	if sb, ok := monValue(fams, "jwt_rotor_publisher_seconds_behind", map[string]string{"publisher": reqName}); !ok || sb < 1 {
		t.Fatalf("jwt_rotor_publisher_seconds_behind{publisher=%s} = %v (present %v); want at least 1", reqName, sb, ok)
	}
	if sb, _ := monValue(fams, "jwt_rotor_publisher_seconds_behind", map[string]string{"publisher": "davopt"}); sb != 0 {
		t.Fatalf("jwt_rotor_publisher_seconds_behind{publisher=davopt} = %v while its store is up", sb)
	}
	t.Logf("%s down %ds: report %v; failures_total %v", reqName, time.Now().Unix()-down, rep, failures)

	// The store returns: the held key activates once the copy holds it,
	// before its cap.
	req.Restart()
	back := time.Now().Unix()
	monWait(t, "the held key to activate after the store returned", time.Duration(heldDelay)*time.Second, func() (bool, string) {
		k := monGateKey(t, m, "held", k2Held)
		return k.state == "active", fmt.Sprintf("%+v", k)
	})
	kh = monGateKey(t, m, "held", k2Held)
	if kh.activateAt < back || kh.activateAt >= originHeld+heldDelay {
		t.Fatalf("ring held: key %s activated at %d; want after the store returned (%d) and before the cap %d", k2Held, kh.activateAt, back, originHeld+heldDelay)
	}
	if !strings.Contains(kh.gateNote, "once the copies of publishers "+reqName+" held it") {
		t.Fatalf("ring held: gate_note %q does not say the copy of %s released it", kh.gateNote, reqName)
	}
	faultSignsWith(t, m, "held", k2Held)
	rep = faultPub(t, env.root, m, reqName)
	if rep["last_error_reason"] != "" || !slices.Contains(stringList(rep["kids"]), k2Held) {
		t.Fatalf("report of %s after its store returned: %v; want no error and a copy holding %s", reqName, rep, k2Held)
	}
	t.Logf("ring held: scheduled %d, store back %d, activated %d (%ds late, cap %ds); gate_note %q", originHeld, back, kh.activateAt, kh.activateAt-originHeld, heldDelay, kh.gateNote)

	if kind != "s3" {
		// What follows is about the WebDAV publisher alone: checked once.
		return
	}
	// The WebDAV publisher is not required: its store's outage delays no
	// activation, and shows as lag.
	faultWaitState(t, env.root, m, "davopt", "current", 30*time.Second)
	dav.Stop()
	k1Free := createRing(t, m, "free", map[string]any{"algorithm": "ES256", "rotation_period": 20,
		"verification_ttl": 100, "max_activation_delay": 20})
	createRole(t, m, "free", map[string]any{"key": "free", "audiences": []string{apiAudience}, "ttl": 30, "max_ttl": 30})
	k2Free, originFree := faultPending(t, m, "free")
	for time.Now().Unix() < originFree-1 {
		faultSignsWith(t, m, "free", k1Free)
		time.Sleep(time.Second)
	}
	monSleepUntil(time.Unix(originFree+2, 0))
	kf := monGateKey(t, m, "free", k2Free)
	if kf.state != "active" || kf.activateAt != originFree || kf.gateNote != "" {
		t.Fatalf("ring free: key %s is %s activating at %d with gate_note %q; want active at its scheduled %d, no note (davopt is not required)", k2Free, kf.state, kf.activateAt, kf.gateNote, originFree)
	}
	faultSignsWith(t, m, "free", k2Free)
	rep = faultPub(t, env.root, m, "davopt")
	if rep["state"] != "behind" || rep["last_error_reason"] != "unreachable" || asInt(t, "behind_seconds", rep["behind_seconds"]) < 1 {
		t.Fatalf("report of davopt while its store is down: %v; want state behind, last_error_reason unreachable, behind_seconds above 0", rep)
	}
	fams = monScrape(t, m, http.Header{"X-Vault-Token": {rootToken}})
	if sb, ok := monValue(fams, "jwt_rotor_publisher_seconds_behind", map[string]string{"publisher": "davopt"}); !ok || sb < 1 {
		t.Fatalf("jwt_rotor_publisher_seconds_behind{publisher=davopt} = %v (present %v); want at least 1", sb, ok)
	}
	if f, _ := monValue(fams, "jwt_rotor_publisher_failures_total", map[string]string{"publisher": "davopt", "reason": "unreachable"}); f < 1 {
		t.Fatalf("jwt_rotor_publisher_failures_total{publisher=davopt,reason=unreachable} = %v; want at least 1", f)
	}
	dav.Restart()
	faultWaitState(t, env.root, m, "davopt", "current", 30*time.Second)
}

// TestPublishingFaultMisbehavingStores guards that a store that denies
// access, answers 500 or hangs blocks neither signing, nor the JWKS
// endpoint, nor another publisher; that the report, the metrics and the
// log give the reason (denied with HTTP 403, server with HTTP 500,
// timeout) and never the store's response body; and that each publisher
// recovers by itself when its store does. The 403 comes from the real S3
// store given a wrong secret. The 500 and the hang come from a WebDAV
// server of the test's own (faultStore), because the real stores produce
// neither on demand; it also serves as a working store between faults.
func TestPublishingFaultMisbehavingStores(t *testing.T) {
	t.Parallel()
	s3 := testserver.S3(t)
	fs := newFaultStore(t)
	m := newMount(t, "pubfault-stores", map[string]any{"jwks_max_age": 5})
	createRing(t, m, "main", map[string]any{"algorithm": "ES256", "rotation_period": 3600, "verification_ttl": 7200})
	createRole(t, m, "main", map[string]any{"key": "main", "audiences": []string{apiAudience}, "ttl": 30, "max_ttl": 30})
	served := func() []string {
		t.Helper()
		_, body := env.root.raw(t, http.MethodGet, m.p("jwks"), nil)
		return faultKIDs(t, body)
	}
	// Signing and the JWKS endpoint answer throughout: each check signs
	// and fetches the JWKS, and counts.
	checks := 0
	keepServing := func() {
		t.Helper()
		sign(t, m, "main", nil)
		if resp, body := env.root.raw(t, http.MethodGet, m.p("jwks"), nil); resp.StatusCode != http.StatusOK || len(faultKIDs(t, body)) == 0 {
			t.Fatalf("JWKS endpoint while a store misbehaves: status %d: %s", resp.StatusCode, body)
		}
		checks++
	}
	waitFor := func(what string, timeout time.Duration, cond func() (bool, string)) {
		t.Helper()
		monWait(t, what, timeout, func() (bool, string) { keepServing(); return cond() })
	}

	fs.setMode("500")
	faultS3Publisher(t, env.root, m, "denied", s3, "stores/", map[string]any{"secret_access_key": "not-the-secret-of-this-store"})
	faultWritePublisher(t, env.root, m, "flaky", map[string]any{"type": "webdav", "url": fs.URL + "/dav/",
		"username": fs.user, "password": fs.pass, "public_url": fs.URL + "/dav/"})
	reasons := map[string]string{"denied": "denied", "flaky": "server"}
	statuses := map[string]string{"denied": "(HTTP 403)", "flaky": "(HTTP 500)"}
	for name, reason := range reasons {
		waitFor(name+" failing with reason "+reason, 60*time.Second, func() (bool, string) {
			rep := faultPub(t, env.root, m, name)
			return rep["state"] == "failing" && rep["last_error_reason"] == reason && asInt(t, "failures", rep["failures"]) >= 2, fmt.Sprint(rep)
		})
		rep := faultPub(t, env.root, m, name)
		lastErr, _ := rep["last_error"].(string)
		if !strings.HasSuffix(lastErr, statuses[name]) {
			t.Fatalf("report of %s: last_error %q does not end with %s", name, lastErr, statuses[name])
		}
		for _, body := range []string{faultBodyMarker, "SignatureDoesNotMatch", "<Error>", "<?xml"} {
			if strings.Contains(lastErr, body) {
				t.Fatalf("report of %s: last_error %q holds the store's response body (%s)", name, lastErr, body)
			}
		}
	}
	fams := monScrape(t, m, http.Header{"X-Vault-Token": {rootToken}})
	for name, reason := range reasons {
		if f, _ := monValue(fams, "jwt_rotor_publisher_failures_total", map[string]string{"publisher": name, "reason": reason}); f < 2 {
			t.Fatalf("jwt_rotor_publisher_failures_total{publisher=%s,reason=%s} = %v; want at least 2", name, reason, f)
		}
	}
	if !logHas(t, env.server.LogPath, "publishing failed; retrying", "publisher=flaky", "reason=server", "HTTP 500") {
		t.Fatalf("the Vault log has no warning of flaky's failure with reason server and HTTP 500")
	}
	if fs.count("PUT") == 0 {
		t.Fatalf("the store answering 500 saw no PUT")
	}

	// Both stores recover: the S3 publisher by its right secret, the
	// WebDAV server by answering again. Their copies then hold what is
	// served.
	faultWritePublisher(t, env.root, m, "denied", map[string]any{"secret_access_key": s3.SecretKey})
	fs.setMode("ok")
	for _, name := range []string{"denied", "flaky"} {
		waitFor(name+" current after its store recovered", 60*time.Second, func() (bool, string) {
			rep := faultPub(t, env.root, m, name)
			return rep["state"] == "current" && slices.Equal(monSortedStrings(rep["kids"]), faultSorted(served())), fmt.Sprint(rep)
		})
	}
	if !logHas(t, env.server.LogPath, "publishing recovered", "publisher=flaky") {
		t.Fatalf("the Vault log does not say flaky recovered")
	}

	// The WebDAV server hangs. A change of the key set is due at both
	// stores: the S3 copy follows it while the other upload hangs, signing
	// and the JWKS endpoint answer, and the hung attempt ends as a timeout.
	fs.setMode("hang")
	pending, ok := readRing(t, m, "main").nextPending()
	if !ok {
		t.Fatal("ring main has no pending key to revoke")
	}
	env.root.mustWrite(t, m.p("keys/main/revoke"), map[string]any{"kid": pending.Kid})
	waitFor("the S3 copy to drop the revoked key while the WebDAV store hangs", 30*time.Second, func() (bool, string) {
		rep := faultPub(t, env.root, m, "denied")
		return rep["state"] == "current" && !slices.Contains(stringList(rep["kids"]), pending.Kid), fmt.Sprint(rep)
	})
	if fs.hanging() == 0 {
		t.Fatalf("the S3 copy followed the revoke before the WebDAV upload even started to hang")
	}
	waitFor("flaky failing with reason timeout", 60*time.Second, func() (bool, string) {
		rep := faultPub(t, env.root, m, "flaky")
		return rep["last_error_reason"] == "timeout", fmt.Sprint(rep)
	})
	rep := faultPub(t, env.root, m, "flaky")
	if !slices.Contains(stringList(rep["revoked_kids"]), pending.Kid) {
		t.Fatalf("report of flaky while its store hangs: %v; want the revoked %s among revoked_kids", rep, pending.Kid)
	}
	fs.setMode("ok")
	waitFor("flaky current after its store stopped hanging", 60*time.Second, func() (bool, string) {
		rep := faultPub(t, env.root, m, "flaky")
		return rep["state"] == "current" && !slices.Contains(stringList(rep["kids"]), pending.Kid), fmt.Sprint(rep)
	})
	logData, err := os.ReadFile(env.server.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(logData), faultBodyMarker) {
		t.Fatalf("the Vault log holds the response body of the store that answered 500")
	}
	t.Logf("signing and the JWKS endpoint answered %d times while the stores misbehaved; the hung store saw %d requests hang", checks, fs.hanging())
}

// TestPublishingFaultRestoresDeletedObject guards the re-assertion: a copy
// deleted from the store (S3, WebDAV and Azure Blob Storage, one publisher
// each) behind the plugin's back is written again at the
// next re-assertion (every 60 seconds), counted once in the report's
// restored and in jwt_rotor_publisher_restored_total, and is again what
// the plugin serves. The time from the deletion to the restoration is
// measured and printed, not asserted: it is up to one re-assert interval.
func TestPublishingFaultRestoresDeletedObject(t *testing.T) {
	t.Parallel()
	m, s3, dav := faultTwoStores(t, "restore")
	az := testserver.Azure(t)
	faultAzurePublisher(t, env.root, m, "az", az, "restore/", nil)
	gcs := startGCSStore(t)
	faultGCSPublisher(t, env.root, m, "gcs", gcs, "restore/", nil)
	const object = "restore/.well-known/jwks.json"
	public := map[string]string{"s3": s3.PublicURL(object), "dav": dav.URL + object, "az": az.PublicURL(object), "gcs": gcs.PublicURL(object)}
	remove := map[string]func(string) error{"s3": s3.DeleteObject, "dav": dav.DeleteObject, "az": az.DeleteObject, "gcs": gcs.DeleteObject}
	for name := range public {
		faultWaitState(t, env.root, m, name, "current", 30*time.Second)
	}
	acked := map[string]int64{}
	for name := range public {
		acked[name] = asInt(t, "last_success", faultPub(t, env.root, m, name)["last_success"])
	}
	deleted := time.Now()
	for name := range public {
		if err := remove[name](object); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range public {
		if resp, _ := rawGet(t, http.MethodGet, u, nil); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s after the deletion: status %d, want 404", u, resp.StatusCode)
		}
	}
	_, want := env.root.raw(t, http.MethodGet, m.p("jwks"), nil)
	took := map[string]time.Duration{}
	monWait(t, "every copy restored", 150*time.Second, func() (bool, string) {
		var state []string
		for name, u := range public {
			if _, done := took[name]; done {
				continue
			}
			if resp, body := rawGet(t, http.MethodGet, u, nil); resp.StatusCode == http.StatusOK {
				took[name] = time.Since(deleted)
				if string(body) != string(want) {
					t.Fatalf("%s restored as %s; the plugin serves %s", name, body, want)
				}
			} else {
				state = append(state, fmt.Sprintf("%s: %d", name, resp.StatusCode))
			}
		}
		return len(took) == len(public), strings.Join(state, ", ")
	})
	fams := monScrape(t, m, http.Header{"X-Vault-Token": {rootToken}})
	for name := range public {
		var rep map[string]any
		monWait(t, name+"'s restoration acknowledged", 30*time.Second, func() (bool, string) {
			rep = faultPub(t, env.root, m, name)
			return asInt(t, "last_success", rep["last_success"]) > acked[name], fmt.Sprint(rep)
		})
		if got := asInt(t, "restored", rep["restored"]); got != 1 {
			t.Fatalf("report of %s: restored %d after one object was deleted; want 1 (%v)", name, got, rep)
		}
		if rep["state"] != "current" {
			t.Fatalf("report of %s after the restoration: %v", name, rep)
		}
		if f, _ := monValue(fams, "jwt_rotor_publisher_restored_total", map[string]string{"publisher": name}); f != 1 {
			fams = monScrape(t, m, http.Header{"X-Vault-Token": {rootToken}})
			if f, _ = monValue(fams, "jwt_rotor_publisher_restored_total", map[string]string{"publisher": name}); f != 1 {
				t.Fatalf("jwt_rotor_publisher_restored_total{publisher=%s} = %v; want 1", name, f)
			}
		}
		t.Logf("%s: restored %s after the deletion (re-assert interval 60s); acknowledged at %d, the previous at %d", name, took[name].Round(100*time.Millisecond), asInt(t, "last_success", rep["last_success"]), acked[name])
	}
}

// TestPublishingFaultRevokeLatency measures, on loopback, how long a
// revoked key stays in the copies: from each of 20 revokes to the later of
// the two publishers (one S3, one WebDAV) acknowledging a copy without the
// revoked kid, read from the report's publishers.<name>.kids. It asserts
// that every revoke reached both stores, and that the stores' public URLs
// then lack the kid; the p50 and p99 it prints are not asserted
// (BENCHMARKS.md keeps them).
func TestPublishingFaultRevokeLatency(t *testing.T) {
	t.Parallel()
	m, s3, dav := faultTwoStores(t, "latency")
	const object = "latency/.well-known/jwks.json"
	public := map[string]string{"s3": s3.PublicURL(object), "dav": dav.URL + object}
	const revokes = 20
	var lat []time.Duration
	for i := range revokes {
		pending, ok := readRing(t, m, "main").nextPending()
		if !ok {
			t.Fatalf("revoke %d: ring main has no pending key", i)
		}
		// Both copies hold the key first, so the revoke is what takes it out.
		monWait(t, "both copies to hold "+pending.Kid, 30*time.Second, func() (bool, string) {
			s, d := faultPub(t, env.root, m, "s3"), faultPub(t, env.root, m, "dav")
			return slices.Contains(stringList(s["kids"]), pending.Kid) && slices.Contains(stringList(d["kids"]), pending.Kid), fmt.Sprint(s, d)
		})
		start := time.Now()
		env.root.mustWrite(t, m.p("keys/main/revoke"), map[string]any{"kid": pending.Kid})
		gone := map[string]bool{}
		deadline := start.Add(30 * time.Second)
		for len(gone) < 2 {
			resp := env.root.mustRead(t, m.p("verifiers"))
			pubs, _ := resp.Data["publishers"].(map[string]any)
			for name := range public {
				rep, _ := pubs[name].(map[string]any)
				if rep != nil && rep["state"] == "current" && !slices.Contains(stringList(rep["kids"]), pending.Kid) {
					gone[name] = true
				}
			}
			if len(gone) < 2 && time.Now().After(deadline) {
				t.Fatalf("revoke %d of %s: after 30s acknowledged without it at %v only", i, pending.Kid, gone)
			}
			if len(gone) < 2 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		lat = append(lat, time.Since(start))
		for name, u := range public {
			resp, body := rawGet(t, http.MethodGet, u, nil)
			if resp.StatusCode != http.StatusOK || slices.Contains(faultKIDs(t, body), pending.Kid) {
				t.Fatalf("revoke %d: %s acknowledged a copy without %s, but its public URL answers %d: %s", i, name, pending.Kid, resp.StatusCode, body)
			}
		}
	}
	if len(lat) != revokes {
		t.Fatalf("%d of %d revokes measured", len(lat), revokes)
	}
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	pct := func(p float64) time.Duration {
		i := int(float64(len(sorted))*p+0.999999) - 1
		return sorted[min(max(i, 0), len(sorted)-1)]
	}
	t.Logf("revoke to both copies acknowledged without the kid, %d revokes: p50 %s, p99 %s, min %s, max %s",
		len(lat), pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), sorted[0].Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond))
}

// faultTwoStores starts an S3 and a WebDAV store, a mount pubfault-<name>
// with a ring "main" whose keys rotate hourly, and publishers "s3" and
// "dav" of the mount's JWKS under the prefix <name>/.
func faultTwoStores(t *testing.T, name string) (*mount, *testserver.S3Server, *testserver.WebDAVServer) {
	t.Helper()
	s3 := testserver.S3(t)
	dav := testserver.WebDAV(t)
	m := newMount(t, "pubfault-"+name, map[string]any{"jwks_max_age": 5})
	createRing(t, m, "main", map[string]any{"algorithm": "ES256", "rotation_period": 3600, "verification_ttl": 7200})
	faultS3Publisher(t, env.root, m, "s3", s3, name+"/", nil)
	faultDAVPublisher(t, env.root, m, "dav", dav, name+"/", nil)
	return m, s3, dav
}

// faultWritePublisher writes publishers/<name> through c.
func faultWritePublisher(t testing.TB, c *vaultClient, m *mount, name string, fields map[string]any) {
	t.Helper()
	c.mustWrite(t, m.p("publishers/"+name), fields)
}

// faultS3Publisher writes an S3 publisher of the store s under prefix, its
// public_url the bucket's path-style URL of prefix; extra overrides.
func faultS3Publisher(t testing.TB, c *vaultClient, m *mount, name string, s *testserver.S3Server, prefix string, extra map[string]any) {
	t.Helper()
	fields := map[string]any{"type": "s3", "bucket": s.Bucket, "region": s.Region, "endpoint": s.Endpoint, "path_style": true,
		"access_key_id": s.AccessKey, "secret_access_key": s.SecretKey, "prefix": prefix, "public_url": s.PublicURL(prefix)}
	for k, v := range extra {
		fields[k] = v
	}
	faultWritePublisher(t, c, m, name, fields)
}

// faultDAVPublisher writes a WebDAV publisher of the server s under prefix.
func faultDAVPublisher(t testing.TB, c *vaultClient, m *mount, name string, s *testserver.WebDAVServer, prefix string, extra map[string]any) {
	t.Helper()
	fields := map[string]any{"type": "webdav", "url": s.URL, "username": s.Username, "password": s.Password,
		"prefix": prefix, "public_url": s.URL + prefix}
	for k, v := range extra {
		fields[k] = v
	}
	faultWritePublisher(t, c, m, name, fields)
}

// faultPub is publishers.<name> of the verifier report.
func faultPub(t testing.TB, c *vaultClient, m *mount, name string) map[string]any {
	t.Helper()
	resp := c.mustRead(t, m.p("verifiers"))
	pubs, _ := resp.Data["publishers"].(map[string]any)
	rep, ok := pubs[name].(map[string]any)
	if !ok {
		t.Fatalf("verifiers: no publisher %q in %s", name, resp.Body)
	}
	return rep
}

// faultWaitState waits until the report shows publisher name in state.
func faultWaitState(t testing.TB, c *vaultClient, m *mount, name, state string, timeout time.Duration) {
	t.Helper()
	monWait(t, "publisher "+name+" "+state, timeout, func() (bool, string) {
		rep := faultPub(t, c, m, name)
		return rep["state"] == state, fmt.Sprint(rep)
	})
}

// faultPending is the ring's next pending key and its scheduled activation.
func faultPending(t testing.TB, m *mount, ringName string) (string, int64) {
	t.Helper()
	k, ok := readRing(t, m, ringName).nextPending()
	if !ok {
		t.Fatalf("ring %s has no pending key", ringName)
	}
	return k.Kid, k.ActivateAt
}

// faultSignsWith signs on role ringName and requires kid to have signed.
func faultSignsWith(t testing.TB, m *mount, ringName, kid string) {
	t.Helper()
	if got := sign(t, m, ringName, nil).Kid; got != kid {
		t.Fatalf("ring %s signed with %s, want %s", ringName, got, kid)
	}
}

// faultKIDs are the kids of a JWKS document.
func faultKIDs(t testing.TB, body []byte) []string {
	t.Helper()
	var set struct {
		Keys []struct {
			KID string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("not a JWKS: %v: %.200s", err, body)
	}
	kids := []string{}
	for _, k := range set.Keys {
		kids = append(kids, k.KID)
	}
	return kids
}

func faultSorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// faultBodyMarker is in every error body faultStore sends, so that a
// report, log line or error quoting a store's response body shows.
const faultBodyMarker = "FAULT-STORE-RESPONSE-BODY-7d1e"

// faultStore is a WebDAV store of the test's own on a loopback port, for
// failures the real stores do not produce on demand. In mode "ok" it keeps
// objects in memory and honours If-None-Match: * and If-Match as the
// plugin's WebDAV sink uses them; in "500" it answers every request with a
// 500 whose body holds faultBodyMarker; in "hang" it answers nothing until
// the client gives up or the mode changes.
type faultStore struct {
	*httptest.Server
	user, pass string

	mu      sync.Mutex
	mode    string
	release chan struct{} // closed when the store stops hanging
	objects map[string]faultObject
	etags   int
	counts  map[string]int
	hung    int
}

type faultObject struct {
	body []byte
	etag string
}

func newFaultStore(t *testing.T) *faultStore {
	fs := &faultStore{user: "fault-user", pass: "fault-password", mode: "ok", release: make(chan struct{}),
		objects: map[string]faultObject{}, counts: map[string]int{}}
	fs.Server = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(func() { fs.setMode("ok"); fs.Close() })
	return fs
}

func (fs *faultStore) setMode(mode string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.mode == "hang" && mode != "hang" {
		close(fs.release)
	}
	if mode == "hang" && fs.mode != "hang" {
		fs.release = make(chan struct{})
	}
	fs.mode = mode
}

func (fs *faultStore) count(method string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.counts[method]
}

func (fs *faultStore) hanging() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.hung
}

func (fs *faultStore) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.counts[r.Method]++
	mode, release := fs.mode, fs.release
	if mode == "hang" {
		fs.hung++
	}
	fs.mu.Unlock()
	switch mode {
	case "500":
		http.Error(w, "internal error "+faultBodyMarker, http.StatusInternalServerError)
		return
	case "hang":
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if u, p, ok := r.BasicAuth(); !ok || u != fs.user || p != fs.pass {
			http.Error(w, "denied "+faultBodyMarker, http.StatusUnauthorized)
			return
		}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	obj, exists := fs.objects[r.URL.Path]
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		if !exists {
			http.Error(w, "missing "+faultBodyMarker, http.StatusNotFound)
			return
		}
		w.Header().Set("ETag", obj.etag)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(obj.body)))
		if r.Method == http.MethodGet {
			_, _ = w.Write(obj.body)
		}
	case http.MethodPut:
		if r.Header.Get("If-None-Match") == "*" && exists {
			http.Error(w, "exists "+faultBodyMarker, http.StatusPreconditionFailed)
			return
		}
		if im := r.Header.Get("If-Match"); im != "" && (!exists || strings.TrimPrefix(obj.etag, "W/") != im) {
			http.Error(w, "changed "+faultBodyMarker, http.StatusPreconditionFailed)
			return
		}
		body := make([]byte, 0, 4096)
		buf := make([]byte, 4096)
		for {
			n, err := r.Body.Read(buf)
			body = append(body, buf[:n]...)
			if err != nil {
				break
			}
		}
		fs.etags++
		obj = faultObject{body: body, etag: fmt.Sprintf(`"fault-%d"`, fs.etags)}
		fs.objects[r.URL.Path] = obj
		w.Header().Set("ETag", obj.etag)
		w.WriteHeader(http.StatusCreated)
	case "MKCOL":
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "method "+faultBodyMarker, http.StatusMethodNotAllowed)
	}
}
