package tests

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// Helpers of the crash, failover and random-operation tests, which run
// Vault with integrated storage (Raft) through testserver.RaftNode: the
// plugin registered and mounted through a node's root client, writes that
// ride out a leadership change, and reads that wait for a mount's plugin.

// registerPlugin registers the plugin by checksum and version with the
// given environment for its process, and mounts nothing.
func registerPlugin(t testing.TB, c *vaultClient, sha string, pluginEnv []string) {
	t.Helper()
	c.mustDo(t, http.MethodPut, "sys/plugins/catalog/secret/"+pluginName, testserver.CatalogEntry(sha, pluginVersion, pluginEnv))
}

// mountPlugin enables the plugin at path, tunes the mount for the JWKS
// headers, and writes its config.
func mountPlugin(t testing.TB, c *vaultClient, path, issuer string, maxAge int) {
	t.Helper()
	c.mustWrite(t, "sys/mounts/"+path, testserver.MountInput(pluginVersion))
	c.mustWrite(t, "sys/mounts/"+path+"/tune", testserver.TuneInput())
	c.mustWrite(t, path+"/config", map[string]any{"issuer": issuer, "jwks_max_age": maxAge})
}

// mustWriteRetry writes and requires a 2xx, retrying a transport error
// or a 5xx for up to 30s (a cluster that has just formed may still move its
// leadership).
func mustWriteRetry(t testing.TB, c *vaultClient, path string, body any) *apiResponse {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for retried := false; ; retried = true {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := c.call(ctx, http.MethodPost, path, body)
		cancel()
		if err == nil && resp.Status >= 200 && resp.Status < 300 {
			return resp
		}
		// A mount whose first attempt went through before the error.
		if err == nil && retried && resp.Status == http.StatusBadRequest && resp.errorsMention("already in use") {
			return resp
		}
		if err == nil && resp.Status < 500 {
			t.Fatalf("POST %s: status %d, errors %q", path, resp.Status, resp.Errors)
		}
		if time.Now().After(deadline) {
			if err != nil {
				t.Fatalf("POST %s: %v", path, err)
			}
			t.Fatalf("POST %s: status %d, errors %q", path, resp.Status, resp.Errors)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// readRingOneActive reads keys/<name> through any client and requires exactly one
// active key.
func readRingOneActive(t testing.TB, c *vaultClient, mountPath, name string) ring {
	t.Helper()
	resp := c.mustRead(t, mountPath+"/keys/"+name)
	r := ringFromData(t, name, resp.Data)
	if n := len(r.inState("active")); n != 1 {
		t.Fatalf("keys/%s has %d active keys, want exactly 1: %+v", name, n, r.SigningKeys)
	}
	return r
}

// waitMount retries a read until the mount answers (its plugin may still
// be starting after an unseal or a failover).
func waitMount(c *vaultClient, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := c.call(ctx, http.MethodGet, path, nil)
		cancel()
		if err == nil && resp.Status == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
			}
			return fmt.Errorf("GET %s not answering after %s: %w", path, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startRaftCluster starts three Raft nodes (<id>-1 to <id>-3) in a new
// directory, initialises the first, unseals all three, and waits until the
// Raft configuration lists three voters. It returns the nodes, a root
// client of each, the plugin's SHA-256 and the unseal key.
func startRaftCluster(t *testing.T, dirPrefix, id string) (nodes []*testserver.RaftNode, clients []*vaultClient, sha, key string) {
	t.Helper()
	root := testserver.TempDir(t, dirPrefix)
	for i := 1; i <= 3; i++ {
		n, sum := testserver.NewRaftNode(t, bins, root, fmt.Sprintf("%s-%d", id, i))
		nodes, sha = append(nodes, n), sum
	}
	for _, n := range nodes {
		// Raft's default timing: with the quickest (1) a leader loses its
		// lease after 500ms without contact, which a loaded machine can
		// cause without any failure.
		n.PerfMultiplier = 5
		n.WriteConfig(t, nodes)
	}
	clusterStart := time.Now()
	key, token := nodes[0].StartFresh(t)
	for _, n := range nodes[1:] {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		if err := n.Unseal(key); err != nil {
			t.Fatal(err)
		}
		if err := n.WaitHealth(90*time.Second, http.StatusTooManyRequests); err != nil {
			t.Fatalf("%v (a standby answers 429)", err)
		}
	}
	for _, n := range nodes {
		clients = append(clients, newVaultClient(n.Addr, token))
	}
	waitVoters(t, clients[0], 3, 60*time.Second)
	t.Logf("3-node cluster up in %s", time.Since(clusterStart).Round(100*time.Millisecond))
	return nodes, clients, sha, key
}
