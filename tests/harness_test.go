package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testEnv is what every acceptance test shares: one Vault server with the
// plugin in its catalog, a root client and a signer whose token has an entity.
type testEnv struct {
	server   *devServer
	root     *vaultClient
	signer   *vaultClient
	entityID string
}

var env *testEnv

const (
	signerPolicy = "jwt-rotor-signer"
	signerUser   = "signer"
	signerPass   = "signer-password"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	vaultBin, pluginBin, err := repoBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	srv, err := startDevServer(vaultBin, pluginBin)
	if srv != nil {
		defer srv.stop()
	}
	if err == nil {
		env, err = setUp(srv)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance harness: %v\n", err)
		reportServer(srv)
		return 1
	}

	code := m.Run()

	if code != 0 {
		// Read the tail before shutdown adds its own lines.
		tail := srv.logTail(80)
		srv.stop()
		printTail(srv, tail)
		return code
	}
	srv.stop()
	os.RemoveAll(srv.dir)
	return 0
}

// reportServer prints the end of the server log and keeps the whole log for
// whoever investigates the failure.
func reportServer(srv *devServer) {
	if srv == nil || srv.logPath == "" {
		return
	}
	printTail(srv, srv.logTail(80))
}

func printTail(srv *devServer, tail string) {
	fmt.Fprintf(os.Stderr, "--- last lines of the Vault server log before shutdown (whole log kept at %s) ---\n%s\n--- end of server log ---\n",
		srv.logPath, tail)
}

// setUp registers the plugin by checksum and version, and creates a userpass
// user allowed to sign on every mount, whose login token carries an entity.
func setUp(srv *devServer) (*testEnv, error) {
	e := &testEnv{server: srv, root: newVaultClient(srv.addr, rootToken)}
	t := &setupT{}
	ok := t.run(func() {
		e.root.mustDo(t, http.MethodPut, "sys/plugins/catalog/secret/"+pluginName, map[string]any{
			"sha256":  srv.pluginSHA,
			"command": pluginName,
			"version": pluginVersion,
		})
		got := e.root.mustRead(t, "sys/plugins/catalog/secret/"+pluginName+"?version="+url.QueryEscape(pluginVersion))
		if v := str(t, got.Data, "version"); v != pluginVersion {
			t.Fatalf("catalog holds version %q, want %q", v, pluginVersion)
		}

		e.root.mustWrite(t, "sys/auth/userpass", map[string]any{"type": "userpass"})
		e.root.mustDo(t, http.MethodPut, "sys/policies/acl/"+signerPolicy, map[string]any{
			// One segment wildcard: sign on any mount the tests enable.
			"policy": `path "+/sign/*" { capabilities = ["update"] }`,
		})
		e.root.mustWrite(t, "auth/userpass/users/"+signerUser, map[string]any{
			"password":       signerPass,
			"token_policies": []string{signerPolicy},
		})
		login := newVaultClient(srv.addr, "").mustWrite(t, "auth/userpass/login/"+signerUser, map[string]any{
			"password": signerPass,
		})
		if login.Auth == nil || login.Auth.ClientToken == "" || login.Auth.EntityID == "" {
			t.Fatalf("userpass login gave no token or no entity: %s", login.Body)
		}
		e.signer = e.root.withToken(login.Auth.ClientToken)
		e.entityID = login.Auth.EntityID
	})
	if !ok {
		return nil, fmt.Errorf("set-up: %s", strings.Join(t.msgs, "; "))
	}
	return e, nil
}

// mount is one enabled instance of the plugin.
type mount struct {
	path   string // e.g. "jwt-sign"
	issuer string // <addr>/v1/<path>
}

// newMount enables the plugin at "jwt-<name>", tunes the mount so that the
// JWKS caching headers pass through Vault, and writes the config with the
// issuer set to the mount's own URL plus any extra config fields. Every test
// gets its own mount because the JWKS and the config are mount-wide.
func newMount(t *testing.T, name string, extraConfig map[string]any) *mount {
	t.Helper()
	m := &mount{path: "jwt-" + name}
	m.issuer = env.root.url(m.path)
	// Vault's HTTP API takes the pinned version in config (a top-level
	// plugin_version is ignored and the newest registered version runs).
	env.root.mustWrite(t, "sys/mounts/"+m.path, map[string]any{
		"type":   pluginName,
		"config": map[string]any{"plugin_version": pluginVersion},
	})
	t.Cleanup(func() {
		if resp := env.root.do(t, http.MethodDelete, "sys/mounts/"+m.path, nil); resp.Status >= 300 {
			t.Logf("disable %s: status %d: %s", m.path, resp.Status, resp.Body)
		}
	})
	respHeaders := []string{"ETag", "Last-Modified"}
	reqHeaders := []string{"If-None-Match", "User-Agent"}
	env.root.mustWrite(t, "sys/mounts/"+m.path+"/tune", map[string]any{
		"allowed_response_headers":    respHeaders,
		"passthrough_request_headers": reqHeaders,
	})
	tune := env.root.mustRead(t, "sys/mounts/"+m.path+"/tune")
	for field, want := range map[string][]string{
		"allowed_response_headers":    respHeaders,
		"passthrough_request_headers": reqHeaders,
	} {
		got := stringList(tune.Data[field])
		for _, h := range want {
			if !slices.Contains(got, h) {
				t.Fatalf("mount %s tuned, but %s = %v lacks %s", m.path, field, got, h)
			}
		}
	}

	cfg := map[string]any{"issuer": m.issuer}
	for k, v := range extraConfig {
		cfg[k] = v
	}
	env.root.mustWrite(t, m.path+"/config", cfg)
	return m
}

// p joins a path under the mount.
func (m *mount) p(rel string) string { return m.path + "/" + rel }

func stringList(v any) []string {
	items, _ := v.([]any)
	var out []string
	for _, it := range items {
		if s, ok := it.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// setupT lets the test helpers, which report through testing.TB, run in
// TestMain before any *testing.T exists.
type setupT struct {
	testing.TB
	msgs []string
}

type setupFailed struct{}

func (s *setupT) Helper() {}
func (s *setupT) Fatalf(format string, args ...any) {
	s.msgs = append(s.msgs, fmt.Sprintf(format, args...))
	panic(setupFailed{})
}
func (s *setupT) Fatal(args ...any) {
	s.msgs = append(s.msgs, fmt.Sprint(args...))
	panic(setupFailed{})
}

// run calls f and reports whether it finished without a Fatal.
func (s *setupT) run(f func()) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, mine := r.(setupFailed); !mine {
				panic(r)
			}
			ok = false
		}
	}()
	f()
	return true
}

// testSeed is the seed of a randomized test: the environment variable env
// when set (to replay a run), else the time. The test prints it.
func testSeed(t *testing.T, env string) uint64 {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", env, v, err)
		}
		return seed
	}
	return uint64(time.Now().UnixNano())
}
