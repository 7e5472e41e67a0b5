package tests

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// testEnv is one Vault server with the plugin in its catalog, a root client
// and a signer whose token has an entity: env, which every acceptance test
// shares, or a test's own (startDedicated).
type testEnv struct {
	server   *testserver.DevServer
	root     *vaultClient
	signer   *vaultClient
	entityID string
}

var env *testEnv

// bins are the binaries under test (bin/vault, the plugin), found once by
// TestMain.
var bins testserver.Binaries

// pluginVersion is the version the binaries under test report: the
// checkout's (scripts/version.sh), which `make plugin` stamps into them and
// names the plugin's file after.
var pluginVersion string

const (
	pluginName   = testserver.PluginName
	rootToken    = testserver.RootToken
	signerPolicy = "jwt-rotor-signer"
	signerUser   = "signer"
	signerPass   = "signer-password"
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	bins, err = testserver.FindBinaries()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginVersion = bins.Version
	srv, err := testserver.StartDev(bins, testserver.DevOptions{LogLevel: "debug"})
	if srv != nil {
		defer srv.Stop()
	}
	if err == nil {
		env, err = setUp(srv)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance harness: %v\n", err)
		if srv != nil {
			printTail(srv, srv.LogTail(80))
		}
		return 1
	}

	code := m.Run()

	if code != 0 {
		// Read the tail before shutdown adds its own lines.
		tail := srv.LogTail(80)
		srv.Stop()
		printTail(srv, tail)
		return code
	}
	srv.Stop()
	os.RemoveAll(srv.Dir)
	return 0
}

// printTail prints the end of the server log and says where the whole log
// is kept for whoever investigates the failure.
func printTail(srv *testserver.DevServer, tail string) {
	fmt.Fprintf(os.Stderr, "--- last lines of the Vault server log before shutdown (whole log kept at %s) ---\n%s\n--- end of server log ---\n",
		srv.LogPath, tail)
}

// setUp creates, on a server whose catalog holds the plugin, a userpass
// user allowed to sign on every mount, whose login token carries an entity.
func setUp(srv *testserver.DevServer) (*testEnv, error) {
	e := &testEnv{server: srv, root: newVaultClient(srv.Addr, rootToken)}
	t := &setupT{}
	ok := t.run(func() {
		e.root.mustWrite(t, "sys/auth/userpass", map[string]any{"type": "userpass"})
		e.root.mustDo(t, http.MethodPut, "sys/policies/acl/"+signerPolicy, map[string]any{
			// One segment wildcard: sign on any mount the tests enable.
			"policy": `path "+/sign/*" { capabilities = ["update"] }`,
		})
		e.root.mustWrite(t, "auth/userpass/users/"+signerUser, map[string]any{
			"password":       signerPass,
			"token_policies": []string{signerPolicy},
		})
		login := newVaultClient(srv.Addr, "").mustWrite(t, "auth/userpass/login/"+signerUser, map[string]any{
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

// newMount enables the plugin at "jwt-<name>", tuned so that the JWKS
// caching headers pass through Vault (testserver.MountInput, TuneInput),
// checks the tuning took, and writes the config with the issuer set to the mount's own URL plus any extra config fields. Every test
// gets its own mount because the JWKS and the config are mount-wide.
func newMount(t *testing.T, name string, extraConfig map[string]any) *mount {
	t.Helper()
	m := &mount{path: "jwt-" + name}
	m.issuer = env.root.url(m.path)
	t.Cleanup(func() {
		if resp := env.root.do(t, http.MethodDelete, "sys/mounts/"+m.path, nil); resp.Status >= 300 {
			t.Logf("disable %s: status %d: %s", m.path, resp.Status, resp.Body)
		}
	})
	env.root.mustWrite(t, "sys/mounts/"+m.path, testserver.MountInput(pluginVersion))
	env.root.mustWrite(t, "sys/mounts/"+m.path+"/tune", testserver.TuneInput())
	tune := env.root.mustRead(t, "sys/mounts/"+m.path+"/tune")
	for field, want := range map[string][]string{
		"allowed_response_headers":    testserver.ResponseHeaders,
		"passthrough_request_headers": testserver.RequestHeaders,
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

// dedicatedServer is a dev server of one test's own, for a test that needs
// a different log level, an audit device, the raw storage endpoint, or a
// flood that must not disturb the shared server: set up like the shared
// one, with clients whose every response rec records.
type dedicatedServer struct {
	*testEnv
	rec *recorder
}

// startDedicated starts a dedicated server for one test and stops it when
// the test ends; its directory (log, audit files) is kept when the test
// fails (testserver.Dev).
func startDedicated(t *testing.T, opts testserver.DevOptions) *dedicatedServer {
	t.Helper()
	srv := testserver.Dev(t, bins, opts)
	e, err := setUp(srv)
	if err != nil {
		t.Fatalf("%v\n%s", err, srv.LogTail(40))
	}
	rec := &recorder{}
	hc := &http.Client{Timeout: 60 * time.Second, Transport: rec}
	e.root = &vaultClient{addr: srv.Addr, token: rootToken, hc: hc}
	e.signer = e.root.withToken(e.signer.token)
	return &dedicatedServer{testEnv: e, rec: rec}
}

// mount enables the plugin at path on the dedicated server, tuned for the
// JWKS headers, and writes its config.
func (d *dedicatedServer) mount(t *testing.T, path string, config map[string]any) *mount {
	t.Helper()
	m := &mount{path: path, issuer: d.root.url(path)}
	d.root.mustWrite(t, "sys/mounts/"+path, testserver.MountInput(pluginVersion))
	d.root.mustWrite(t, "sys/mounts/"+path+"/tune", testserver.TuneInput())
	cfg := map[string]any{"issuer": m.issuer}
	for k, v := range config {
		cfg[k] = v
	}
	d.root.mustWrite(t, m.p("config"), cfg)
	return m
}

// ring creates a ring and forces its first key active.
func (d *dedicatedServer) ring(t *testing.T, m *mount, name string, settings map[string]any) string {
	t.Helper()
	d.root.mustWrite(t, m.p("keys/"+name), settings)
	resp := d.root.mustWrite(t, m.p("keys/"+name+"/rotate"), map[string]any{"force": true})
	return str(t, resp.Data, "active_kid")
}

// recorder is an http.RoundTripper that keeps a copy of every response
// (status line, headers and body) for the secrecy scan. Responses of
// sys/raw, the test's own privileged reads of storage, are counted but not
// kept.
type recorder struct {
	mu        sync.Mutex
	responses []recorded
	skipped   int
}

type recorded struct {
	method, path string
	data         []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	skip := strings.HasPrefix(req.URL.Path, "/v1/sys/raw/")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	defer r.mu.Unlock()
	if skip {
		r.skipped++
		return resp, nil
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%s %s\n", resp.Proto, resp.Status)
	resp.Header.Write(&buf)
	buf.WriteString("\n")
	buf.Write(body)
	r.responses = append(r.responses, recorded{method: req.Method, path: req.URL.Path, data: buf.Bytes()})
	return resp, nil
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.responses...)
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
