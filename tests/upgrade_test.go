package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Upgrade and downgrade as docs/operations.md says, on a real Vault: a
// second build, registered under its own file and version beside the first,
// takes over a mount with `tune -plugin-version` and a reload, signs with
// the same keys, and hands back to the first the same way (both write the
// same storage schema). Through both switches the JWKS never answers 5xx,
// and tokens signed before the switch still verify after it. The refusal
// of a newer schema's entries is TestRefusesNewerSchema's.
func TestUpgradeDowngrade(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	const v2 = "v99.0.0-upgrade"
	file2 := pluginName + "_" + v2
	bin2 := filepath.Join(env.server.Dir, "plugins", file2)
	build := exec.Command("go", "build", "-ldflags", "-X github.com/jwt-rotor/vault-plugin-jwt-rotor.Version="+v2,
		"-o", bin2, "./cmd/"+pluginName)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", v2, err, out)
	}
	t.Cleanup(func() { os.Remove(bin2) })
	b, err := os.ReadFile(bin2)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	sha2 := hex.EncodeToString(sum[:])
	// A registration whose version differs from the binary's is refused.
	if resp := env.root.write(t, "sys/plugins/catalog/secret/"+pluginName, map[string]any{
		"sha256": sha2, "command": file2, "version": "v98.0.0",
	}); resp.Status < 400 {
		t.Errorf("registering %s as v98.0.0: status %d, want a refusal", file2, resp.Status)
	}
	env.root.mustWrite(t, "sys/plugins/catalog/secret/"+pluginName, map[string]any{
		"sha256": sha2, "command": file2, "version": v2,
	})
	t.Cleanup(func() {
		env.root.do(t, http.MethodDelete, "sys/plugins/catalog/secret/"+pluginName+"?version="+v2, nil)
	})

	m := newMount(t, "upgrade", nil)
	// Pinned to the harness's version, which it runs.
	for _, field := range []string{"plugin_version", "running_plugin_version"} {
		if got := str(t, env.root.mustRead(t, "sys/mounts/"+m.path).Data, field); got != pluginVersion {
			t.Fatalf("a new mount's %s is %q, want %q", field, got, pluginVersion)
		}
	}
	env.root.mustWrite(t, m.p("keys/ring"), map[string]any{"algorithm": "ES256"})
	env.root.mustWrite(t, m.p("keys/ring/rotate"), map[string]any{"force": true})
	env.root.mustWrite(t, m.p("roles/api"), map[string]any{"key": "ring", "audiences": []string{"api"}, "ttl": "15m", "max_ttl": "1h"})
	sign := func() string {
		return str(t, env.signer.mustWrite(t, m.p("sign/api"), map[string]any{}).Data, "token")
	}
	tokens := []string{sign()}
	kid := str(t, env.root.mustRead(t, m.p("keys/ring")).Data, "active_kid")

	// Verifiers poll the JWKS throughout; fetches that start while a tune
	// and reload are in flight are counted apart (how many there are
	// depends on timing, so it is reported, not asserted).
	var fetches, failures, duringSwitch atomic.Int64
	var switching atomic.Bool
	var lastFailure atomic.Value
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if switching.Load() {
					duringSwitch.Add(1)
				}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.root.url(m.p("jwks")), nil)
				resp, err := http.DefaultClient.Do(req)
				if ctx.Err() != nil {
					return
				}
				fetches.Add(1)
				if err != nil || resp.StatusCode >= 500 {
					failures.Add(1)
					if err != nil {
						lastFailure.Store(err.Error())
					} else {
						lastFailure.Store(resp.Status)
					}
				}
				if resp != nil {
					resp.Body.Close()
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	switchTo := func(version string) {
		t.Helper()
		before := fetches.Load()
		switching.Store(true)
		env.root.mustWrite(t, "sys/mounts/"+m.path+"/tune", map[string]any{"plugin_version": version})
		env.root.mustWrite(t, "sys/plugins/reload/backend", map[string]any{"mounts": []string{m.path + "/"}})
		switching.Store(false)
		if got := str(t, env.root.mustRead(t, "sys/mounts/"+m.path).Data, "running_plugin_version"); got != version {
			t.Fatalf("after the reload the mount runs %q, want %q", got, version)
		}
		// The signing key and the schedule are unchanged by the switch.
		if got := str(t, env.root.mustRead(t, m.p("keys/ring")).Data, "active_kid"); got != kid {
			t.Fatalf("after switching to %s the active kid is %s, was %s", version, got, kid)
		}
		tokens = append(tokens, sign())
		// The poller saw the mount after the switch too.
		for fetches.Load() < before+20 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	switchTo(v2)
	switchTo(pluginVersion)
	cancel()
	wg.Wait()

	if n := failures.Load(); n != 0 {
		t.Errorf("%d of %d JWKS fetches during the switches failed (last: %v)", n, fetches.Load(), lastFailure.Load())
	}
	resp, body := env.root.raw(t, http.MethodGet, m.p("jwks"), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("JWKS after the switches: %d %s", resp.StatusCode, body)
	}
	set := parseJWKS(t, "jwks", resp, body).Set
	for i, tok := range tokens {
		parsed, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		keys := set.Key(parsed.Signatures[0].Header.KeyID)
		if len(keys) != 1 {
			t.Fatalf("token %d: kid %s not in the JWKS", i, parsed.Signatures[0].Header.KeyID)
		}
		if _, err := parsed.Verify(keys[0].Key); err != nil {
			t.Errorf("token %d (signed %s) does not verify after the switches: %v", i, []string{"before the upgrade", "by " + v2, "after the downgrade"}[i], err)
		}
	}
	t.Logf("%d tokens verified; %d JWKS fetches, %d of them begun during a tune and reload, %d failed", len(tokens), fetches.Load(), duringSwitch.Load(), failures.Load())
}
