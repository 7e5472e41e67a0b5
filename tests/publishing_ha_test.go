package tests

import (
	"fmt"
	"net/http"
	"strings"
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
// serves within a pass and an attempt of the mount answering again, and
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
			d := w.awaitBody(t, ready, served, revokedGoneBound+20*time.Second)
			if d > revokedGoneBound {
				t.Errorf("kill %d: %s caught up %s after the mount answered, bound %s", i+1, w.url, d.Round(10*time.Millisecond), revokedGoneBound)
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
