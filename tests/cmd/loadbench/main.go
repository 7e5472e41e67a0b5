// Command loadbench measures the plugin against Vault's own built-ins on the
// same server: minting by a read of token/<role> against sign/<role>, the
// plugin's cheapest authenticated read, identity tokens and transit; the JWKS
// against the identity JWKS; with sys/health and the plugin's cheapest reads
// as floors. Scenarios run interleaved (A B A B ...) at the same concurrency for
// several rounds, and the table reports the median of the rounds and each
// scenario's ratio to its peer.
//
// It expects a running Vault with the plugin mounted at jwt/ (scripts/bench.sh
// starts one) and configures everything else it needs with the root token.
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	addr     = flag.String("addr", "http://127.0.0.1:8200", "Vault address")
	root     = flag.String("token", "root", "root token, for setup")
	clients  = flag.Int("clients", 8, "concurrent clients per scenario")
	rounds   = flag.Int("rounds", 5, "interleaved rounds")
	duration = flag.Duration("duration", 3*time.Second, "length of one scenario run")
	mount    = flag.String("mount", "jwt", "plugin mount")
	mem      = flag.Bool("memory", false, "measure the plugin's RSS with 1,000 rings and 10,000 tracked verifiers instead")
	only     = flag.String("only", "", "comma-separated words: run only the groups whose first scenario contains one (default: every group)")
)

var httpClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

func call(method, path, token string, body any, header http.Header) (int, []byte, http.Header, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, *addr+"/v1/"+path, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header, err
}

func must(method, path string, body any) []byte {
	code, out, _, err := call(method, path, *root, body, nil)
	if err != nil || code >= 400 {
		fmt.Fprintf(os.Stderr, "setup %s %s: %d %v %s\n", method, path, code, err, out)
		os.Exit(1)
	}
	return out
}

// scenario is one kind of request; ok checks each answer so a broken
// request can never pass for a fast one.
type scenario struct {
	name   string
	tokens int // tokens produced per request
	do     func() (bool, error)
}

type result struct {
	rps, p50, p99 float64 // requests/s, ms, ms
}

func run(s scenario) result {
	var stop atomic.Bool
	var mu sync.Mutex
	var lat []time.Duration
	var failures atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for !stop.Load() {
				t0 := time.Now()
				ok, err := s.do()
				if err != nil || !ok {
					failures.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	time.Sleep(*duration)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if f := failures.Load(); f > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d failed requests\n", s.name, f)
		os.Exit(1)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000
	}
	return result{rps: float64(len(lat)) / elapsed, p50: q(0.5), p99: q(0.99)}
}

// selected reports whether -only picks the group led by scenario name.
func selected(name string) bool {
	if *only == "" {
		return true
	}
	for _, w := range strings.Split(*only, ",") {
		if w = strings.TrimSpace(w); w != "" && strings.Contains(name, w) {
			return true
		}
	}
	return false
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func main() {
	flag.Parse()
	if *mem {
		memory()
		return
	}
	user := setup()
	m := *mount

	post := func(path string, body any, check func([]byte) bool) func() (bool, error) {
		return func() (bool, error) {
			code, out, _, err := call("POST", path, user, body, nil)
			return code == 200 && check(out), err
		}
	}
	get := func(path, token string, header http.Header, want int) func() (bool, error) {
		return func() (bool, error) {
			code, _, _, err := call("GET", path, token, nil, header)
			return code == want, err
		}
	}
	hasToken := func(b []byte) bool { return bytes.Contains(b, []byte(`"token":"ey`)) }
	read := func(path string, check func([]byte) bool) func() (bool, error) {
		return func() (bool, error) {
			code, out, _, err := call("GET", path, user, nil, nil)
			return code == 200 && check(out), err
		}
	}
	hasSig := func(b []byte) bool { return bytes.Contains(b, []byte(`"signature":"vault:v1:`)) }
	batch := make([]any, 100)
	for i := range batch {
		batch[i] = map[string]any{"claims": map[string]any{"scope": "read"}}
	}
	input := base64.StdEncoding.EncodeToString([]byte(`eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJiZW5jaCJ9`))
	_, _, h, _ := call("GET", m+"/jwks", "", nil, nil)
	etag := h.Get("Etag")

	scenarios := map[string]scenario{
		"sys/health":         {"sys/health", 1, get("sys/health", "", nil, 200)},
		"plugin read config": {"plugin read config", 1, get(m+"/config", user, nil, 200)},
		"plugin discovery":   {"plugin discovery", 1, get(m+"/.well-known/openid-configuration", "", nil, 200)},
		// A write that changes nothing: the floor of any plugin write, which
		// pays Vault's existence check (a second round trip to the plugin).
		"plugin no-op write":    {"plugin no-op write", 1, post(m+"/keys/bench-es256/rotate", map[string]any{"expected_active_kid": "none"}, func(b []byte) bool { return bytes.Contains(b, []byte(`"rotated":false`)) })},
		"plugin token ES256":    {"plugin token ES256", 1, read(m+"/token/bench-es256", hasToken)},
		"plugin token EdDSA":    {"plugin token EdDSA", 1, read(m+"/token/bench-eddsa", hasToken)},
		"plugin token RS256":    {"plugin token RS256", 1, read(m+"/token/bench-rs256", hasToken)},
		"plugin sign ES256":     {"plugin sign ES256", 1, post(m+"/sign/bench-es256", map[string]any{"claims": map[string]any{"scope": "read"}}, hasToken)},
		"plugin sign EdDSA":     {"plugin sign EdDSA", 1, post(m+"/sign/bench-eddsa", map[string]any{"claims": map[string]any{"scope": "read"}}, hasToken)},
		"plugin sign RS256":     {"plugin sign RS256", 1, post(m+"/sign/bench-rs256", map[string]any{"claims": map[string]any{"scope": "read"}}, hasToken)},
		"plugin batch100 ES256": {"plugin batch100 ES256", 100, post(m+"/sign/bench-es256", map[string]any{"batch_input": batch}, func(b []byte) bool { return bytes.Count(b, []byte(`"token":"ey`)) == 100 })},
		"identity token ES256":  {"identity token ES256", 1, get("identity/oidc/token/bench-es256", user, nil, 200)},
		"identity token EdDSA":  {"identity token EdDSA", 1, get("identity/oidc/token/bench-eddsa", user, nil, 200)},
		"identity token RS256":  {"identity token RS256", 1, get("identity/oidc/token/bench-rs256", user, nil, 200)},
		"transit sign ES256":    {"transit sign ES256", 1, post("transit/sign/bench-es256", map[string]any{"input": input, "marshaling_algorithm": "jws"}, hasSig)},
		"transit sign Ed25519":  {"transit sign Ed25519", 1, post("transit/sign/bench-ed25519", map[string]any{"input": input}, hasSig)},
		"transit sign RS256":    {"transit sign RS256", 1, post("transit/sign/bench-rsa/sha2-256", map[string]any{"input": input, "signature_algorithm": "pkcs1v15"}, hasSig)},
		"plugin JWKS 200":       {"plugin JWKS 200", 1, get(m+"/jwks", "", nil, 200)},
		"plugin JWKS 304":       {"plugin JWKS 304", 1, get(m+"/jwks", "", http.Header{"If-None-Match": {etag}}, 304)},
		"identity JWKS 200":     {"identity JWKS 200", 1, get("identity/oidc/.well-known/keys", "", nil, 200)},
	}
	// Each group runs interleaved; the first scenario is compared with the
	// others ("ratio" = first / other, in tokens per second).
	groups := [][]string{
		{"plugin token ES256", "plugin sign ES256", "plugin read config", "identity token ES256", "transit sign ES256", "plugin no-op write"},
		{"plugin token EdDSA", "plugin sign EdDSA", "plugin read config", "identity token EdDSA", "transit sign Ed25519"},
		{"plugin token RS256", "plugin sign RS256", "plugin read config", "identity token RS256", "transit sign RS256"},
		{"plugin batch100 ES256", "transit sign ES256"},
		{"plugin JWKS 200", "identity JWKS 200", "plugin discovery"},
		{"plugin JWKS 304", "plugin JWKS 200"},
		{"sys/health", "plugin read config", "plugin discovery"},
	}
	fmt.Printf("loadbench: %s, %d clients, %d rounds of %s per scenario, interleaved\n\n", *addr, *clients, *rounds, *duration)
	fmt.Printf("%-26s %12s %10s %10s   %s\n", "scenario", "tokens/s", "p50 ms", "p99 ms", "ratio to its peers (tokens/s)")
	for _, g := range groups {
		if !selected(g[0]) {
			continue
		}
		rps := map[string][]float64{}
		p50 := map[string][]float64{}
		p99 := map[string][]float64{}
		for _, name := range g {
			if scenarios[name].do == nil {
				fmt.Fprintf(os.Stderr, "no scenario %q\n", name)
				os.Exit(1)
			}
		}
		for r := 0; r < *rounds; r++ {
			for _, name := range g {
				res := run(scenarios[name])
				rps[name] = append(rps[name], res.rps*float64(scenarios[name].tokens))
				p50[name] = append(p50[name], res.p50)
				p99[name] = append(p99[name], res.p99)
			}
		}
		lead := median(rps[g[0]])
		for i, name := range g {
			ratio := ""
			if i > 0 {
				ratio = fmt.Sprintf("%s = %.2fx this", g[0], lead/median(rps[name]))
			}
			fmt.Printf("%-26s %12.0f %10.2f %10.2f   %s\n", name, median(rps[name]), median(p50[name]), median(p99[name]), ratio)
		}
		fmt.Println()
	}
}

// setup creates equivalent objects for the plugin, identity tokens and
// transit, and a userpass user (whose token has an entity) allowed to use
// them all; it returns that user's token.
func setup() string {
	m := *mount
	for _, k := range []struct{ name, alg string }{{"bench-es256", "ES256"}, {"bench-eddsa", "EdDSA"}, {"bench-rs256", "RS256"}} {
		must("POST", m+"/keys/"+k.name, map[string]any{"algorithm": k.alg})
		must("POST", m+"/keys/"+k.name+"/rotate", map[string]any{"force": true})
		must("POST", m+"/roles/"+k.name, map[string]any{"key": k.name, "audiences": "bench", "allowed_claims": "scope", "allow_token_read": true})
		must("POST", "identity/oidc/key/"+k.name, map[string]any{"algorithm": k.alg, "allowed_client_ids": "*"})
		must("POST", "identity/oidc/role/"+k.name, map[string]any{"key": k.name, "ttl": "15m"})
	}
	must("POST", "sys/mounts/transit", map[string]any{"type": "transit"})
	must("POST", "transit/keys/bench-es256", map[string]any{"type": "ecdsa-p256"})
	must("POST", "transit/keys/bench-ed25519", map[string]any{"type": "ed25519"})
	must("POST", "transit/keys/bench-rsa", map[string]any{"type": "rsa-2048"})
	policy := fmt.Sprintf(`
path "%[1]s/sign/*" { capabilities = ["update"] }
path "%[1]s/token/*" { capabilities = ["read"] }
path "%[1]s/config" { capabilities = ["read"] }
path "%[1]s/keys/+/rotate" { capabilities = ["update"] }
path "identity/oidc/token/*" { capabilities = ["read"] }
path "transit/sign/*" { capabilities = ["update"] }
`, m)
	must("PUT", "sys/policies/acl/bench", map[string]any{"policy": policy})
	out := must("GET", "sys/auth", nil)
	if !strings.Contains(string(out), `"userpass/"`) {
		must("POST", "sys/auth/userpass", map[string]any{"type": "userpass"})
	}
	must("POST", "auth/userpass/users/bench", map[string]any{"password": "bench", "token_policies": "bench"})
	login := must("POST", "auth/userpass/login/bench", map[string]any{"password": "bench"})
	var lr struct {
		Auth struct {
			ClientToken string `json:"client_token"`
		} `json:"auth"`
	}
	if err := json.Unmarshal(login, &lr); err != nil || lr.Auth.ClientToken == "" {
		fmt.Fprintf(os.Stderr, "userpass login: %v %s\n", err, login)
		os.Exit(1)
	}
	return lr.Auth.ClientToken
}
