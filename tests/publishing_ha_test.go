package tests

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestPublishingCrashRestart guards the copies across a crash in the
// middle of publishing: Vault (single-node Raft, storage kept) is killed
// with SIGKILL, with its plugin, 0 to 1 s (spread evenly) after it acknowledged a
// rotation that revokes the outgoing key (while the upload pass that
// drops that key may be under way), and restarted on the same storage.
// Each time, every copy (S3 and WebDAV) converges to the JWKS the plugin
// serves within a pass and an attempt of the mount answering again (no
// upload is under way in a plugin that has just started), and
// no revoked kid, once a copy was read without it, is ever read in a copy
// again (both copies' public URLs are polled every 100 ms throughout).
// Takes about a minute.
func TestPublishingCrashRestart(t *testing.T) {
	t.Parallel()
	const (
		kills  = 6
		maxAge = 5
	)
	s3, _ := s3Published(t)
	dav, _ := webdavPublished(t, maxAge)
	root := testserver.TempDir(t, "jwt-rotor-pubcrash-")
	node, sha := testserver.NewRaftNode(t, bins, root, "pubcrash-1")
	node.WriteConfig(t, nil)
	key, token := node.StartFresh(t)
	vc := newVaultClient(node.Addr, token)
	registerPlugin(t, vc, sha, nil)
	mountPlugin(t, vc, "jwt", s3.issuer(), maxAge)
	vc.mustWrite(t, "jwt/keys/crash", map[string]any{
		"algorithm": "ES256", "rotation_period": 3600, "publish_lead": 10, "verification_ttl": 120,
	})
	vc.mustWrite(t, "jwt/keys/crash/rotate", map[string]any{"force": true})
	vc.mustWrite(t, "jwt/publishers/s3", s3.publisher(nil))
	vc.mustWrite(t, "jwt/publishers/dav", dav.publisher(nil))

	served := func() []byte { return servedJWKS(node.Addr, "jwt") }
	watchers := []*copyWatcher{watchCopy(t, s3.jwksURL(), 100*time.Millisecond), watchCopy(t, dav.jwksURL(), 100*time.Millisecond)}
	for _, w := range watchers {
		w.awaitBody(t, time.Now(), served, 30*time.Second)
	}
	var lines []string
	interrupted := 0
	for i := range kills {
		resp := vc.mustWrite(t, "jwt/keys/crash/rotate", map[string]any{"revoke_active": true})
		at := time.Now()
		revoked := str(t, resp.Data, "previous_kid")
		for _, w := range watchers {
			w.ban(revoked, at)
		}
		delay := time.Duration(i) * time.Second / kills
		time.Sleep(delay)
		node.Kill9()
		killed := time.Now()
		if err := node.Start(); err != nil {
			t.Fatal(err)
		}
		if err := node.Unseal(key); err != nil {
			t.Fatal(err)
		}
		if err := node.WaitHealth(60*time.Second, http.StatusOK); err != nil {
			t.Fatal(err)
		}
		if err := waitMount(vc, "jwt/keys/crash", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		ready := time.Now()
		// The kill came before a copy was read without the revoked kid:
		// the pass that drops it had not finished.
		for _, w := range watchers {
			if gone, ok := w.goneTime(revoked); !ok || gone.After(killed) {
				interrupted++
				break
			}
		}
		var took []string
		for _, w := range watchers {
			// A read begun after the mount answered again holds what the
			// plugin serves within a pass and an attempt.
			d := w.awaitBody(t, ready, served, freshPassBound+20*time.Second)
			if d > freshPassBound {
				t.Errorf("kill %d: %s caught up %s after the mount answered, bound %s", i+1, w.url, d.Round(10*time.Millisecond), freshPassBound)
			}
			if got := kidsOf(w.lastBody()); strings.Contains(strings.Join(got, " "), revoked) {
				t.Errorf("kill %d: %s holds the revoked kid %s: %v", i+1, w.url, revoked, got)
			}
			took = append(took, d.Round(10*time.Millisecond).String())
		}
		lines = append(lines, fmt.Sprintf("kill %d: %s after the revocation of %s; Vault back after %s; copies current %s after", i+1,
			delay, revoked, ready.Sub(killed).Round(100*time.Millisecond), strings.Join(took, ", ")))
	}
	reads := 0
	for _, w := range watchers {
		reads += w.verdict(t)
	}
	if interrupted == 0 {
		t.Errorf("every kill came after both copies had dropped the revoked kid: no kill interrupted publishing")
	}
	t.Logf("%d kills, %d of them before a copy had dropped the revoked kid; %d copy reads, no revoked kid back:\n%s", kills, interrupted, reads, strings.Join(lines, "\n"))
}

// TestPublishingFailover guards who writes the copies in a 3-node Raft
// cluster publishing to one S3 store: when the active node steps down,
// when it is frozen (SIGSTOP of Vault and its plugin) until another node
// has taken over and published a revocation, then resumed, and when it is
// killed (SIGKILL, with its plugin), each time right after a change it
// was to publish, the node that takes over publishes (a revocation made
// through it after the failover leaves the copy within the bound of
// docs/publishing.md, 18 s), and the node that lost leadership writes
// nothing to the store from then on: no request at all after a step-down
// or a kill; after the freeze, which it learns of only when it resumes,
// no write the store accepts (a conditional write refused is allowed). Every write reaching the store passes a proxy that
// names the node whose plugin process sent it; the copy is polled
// throughout and no revoked kid may come back into it. Takes about a
// minute and a half.
func TestPublishingFailover(t *testing.T) {
	t.Parallel()
	const maxAge = 5
	nodes, clients, sha, key := startRaftCluster(t, "jwt-rotor-pubha-", "pubha")

	s3srv := testserver.S3(t)
	proxy := newStoreProxy(t, s3srv.Endpoint, nodes)
	// The plugin writes and reads back through the proxy; the watcher
	// reads the store directly.
	store := publishedStore{name: "s3", base: proxy.url + "/" + s3srv.Bucket + "/" + copyPrefix, fields: map[string]any{
		"type": "s3", "bucket": s3srv.Bucket, "region": s3srv.Region, "endpoint": proxy.url, "path_style": true,
		"access_key_id": s3srv.AccessKey, "secret_access_key": s3srv.SecretKey,
	}}
	mustWriteRetry(t, clients[0], "sys/plugins/catalog/secret/"+pluginName, testserver.CatalogEntry(sha, pluginVersion, nil))
	mustWriteRetry(t, clients[0], "sys/mounts/jwt", testserver.MountInput(pluginVersion))
	mustWriteRetry(t, clients[0], "sys/mounts/jwt/tune", testserver.TuneInput())
	mustWriteRetry(t, clients[0], "jwt/config", map[string]any{"issuer": store.issuer(), "jwks_max_age": maxAge})
	mustWriteRetry(t, clients[0], "jwt/keys/ha", map[string]any{
		"algorithm": "ES256", "rotation_period": 3600, "publish_lead": 10, "verification_ttl": 120,
	})
	mustWriteRetry(t, clients[0], "jwt/keys/ha/rotate", map[string]any{"force": true})
	mustWriteRetry(t, clients[0], "jwt/publishers/copy", store.publisher(nil))

	watch := watchCopy(t, s3srv.PublicURL(copyPrefix+".well-known/jwks.json"), 100*time.Millisecond)
	leader := activeIndex(t, nodes)
	served := func(i int) func() []byte { return func() []byte { return servedJWKS(nodes[i].Addr, "jwt") } }
	watch.awaitBody(t, time.Now(), served(leader), 30*time.Second)
	if ws := proxy.writesSince(time.Time{}); len(ws) == 0 || ws[0].node != leader {
		t.Fatalf("first writes %+v: want the active node %s's", ws, nodes[leader].ID)
	}

	var lines []string
	for _, how := range []string{"step-down", "kill -9", "freeze"} {
		old := leader
		// A change for the active node to publish, and at once the loss
		// of its leadership.
		mustWriteRetry(t, clients[old], "jwt/keys/ha/rotate", map[string]any{"force": true})
		var frozen []int
		switch how {
		case "step-down":
			clients[old].mustDo(t, http.MethodPut, "sys/step-down", nil)
		case "freeze":
			frozen = append(testserver.PluginPIDs(nodes[old].PluginDir), nodes[old].PID())
			for _, pid := range frozen {
				_ = syscall.Kill(pid, syscall.SIGSTOP)
			}
			t.Cleanup(func() {
				for _, pid := range frozen {
					_ = syscall.Kill(pid, syscall.SIGCONT)
				}
			})
		default:
			nodes[old].Kill9()
		}
		lost := time.Now()
		leader = -1
		for deadline := time.Now().Add(60 * time.Second); leader < 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			for i, n := range nodes {
				if i == old || !n.Running() {
					continue
				}
				if code, err := n.Health(); err == nil && code == http.StatusOK {
					leader = i
				}
			}
		}
		if leader < 0 {
			t.Fatalf("%s of %s: no other node became active within 60s", how, nodes[old].ID)
		}
		if err := waitMount(clients[leader], "jwt/keys/ha", 60*time.Second); err != nil {
			t.Fatal(err)
		}
		took := time.Since(lost)
		// A revocation made through the new active node reaches the copy.
		resp := mustWriteRetry(t, clients[leader], "jwt/keys/ha/rotate", map[string]any{"revoke_active": true})
		revoked := str(t, resp.Data, "previous_kid")
		watch.ban(revoked, time.Now())
		gone := watch.awaitGone(t, revoked, revokedGoneBound)
		watch.awaitBody(t, time.Now(), served(leader), 30*time.Second)
		wait := 2 * time.Second
		if how == "freeze" {
			// The old node resumes with the view it had (its own copy of
			// storage lacks the revocation) and learns it is no longer
			// active only from the cluster, which Vault may take a while
			// to act on: its plugin runs passes meanwhile.
			for _, pid := range frozen {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
			wait = 15 * time.Second
		}
		// Writes from here to the next round: the new node's, none of
		// the old one's.
		time.Sleep(wait)
		watch.awaitBody(t, time.Now(), served(leader), 30*time.Second)
		byNode := map[int]int{}
		refused := 0
		for _, w := range proxy.writesSince(lost) {
			byNode[w.node]++
			switch {
			case w.node == old && how == "freeze" && w.status >= 300:
				refused++
			case w.node == old:
				t.Errorf("%s: %s wrote %s %s (status %d) at %s, %s after it lost leadership", how, nodes[old].ID, w.method, w.path, w.status,
					w.at.Format("15:04:05.000"), w.at.Sub(lost).Round(time.Millisecond))
			}
		}
		if byNode[-1] > 0 {
			t.Errorf("%s: %d writes from a process the proxy could not tie to a node", how, byNode[-1])
		}
		if byNode[leader] == 0 {
			t.Errorf("%s: the new active node %s wrote nothing", how, nodes[leader].ID)
		}
		lines = append(lines, fmt.Sprintf("%s of %s: %s active %s later; revoked %s left the copy %s after (bound %s); writes since: %d by %s, %d by %s (%d refused; %d plugin processes of it running)",
			how, nodes[old].ID, nodes[leader].ID, took.Round(100*time.Millisecond), revoked, gone.Round(10*time.Millisecond), revokedGoneBound,
			byNode[leader], nodes[leader].ID, byNode[old], nodes[old].ID, refused, len(testserver.PluginPIDs(nodes[old].PluginDir))))
		if how == "kill -9" {
			// Back as a standby, so that the cluster keeps a quorum when
			// the next round freezes the active node.
			if err := nodes[old].Start(); err != nil {
				t.Fatal(err)
			}
			if err := nodes[old].Unseal(key); err != nil {
				t.Fatal(err)
			}
			if err := nodes[old].WaitHealth(90*time.Second, http.StatusTooManyRequests); err != nil {
				t.Fatal(err)
			}
			waitVoters(t, clients[leader], 3, 60*time.Second)
		}
	}
	reads := watch.verdict(t)
	t.Logf("%d copy reads, no revoked kid back:\n%s", reads, strings.Join(lines, "\n"))
}
