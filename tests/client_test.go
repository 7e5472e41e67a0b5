package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// vaultClient speaks Vault's HTTP API directly. The tests use plain HTTP
// rather than Vault's Go client so that they see exactly the status codes,
// headers and bodies a verifier or Terraform would see.
type vaultClient struct {
	addr  string
	token string
	hc    *http.Client
}

// apiResponse is Vault's JSON envelope plus the transport details the tests
// assert on.
type apiResponse struct {
	Status   int
	Header   http.Header
	Body     []byte
	Data     map[string]any
	Warnings []string
	Errors   []string
	Auth     *apiAuth
}

type apiAuth struct {
	ClientToken string   `json:"client_token"`
	EntityID    string   `json:"entity_id"`
	Policies    []string `json:"policies"`
}

func newVaultClient(addr, token string) *vaultClient {
	return &vaultClient{addr: addr, token: token, hc: &http.Client{Timeout: 30 * time.Second}}
}

// withToken returns a client for the same server acting as another caller.
func (c *vaultClient) withToken(token string) *vaultClient {
	return &vaultClient{addr: c.addr, token: token, hc: c.hc}
}

// url is the full address of an API path such as "sys/health".
func (c *vaultClient) url(path string) string {
	return c.addr + "/v1/" + strings.TrimPrefix(path, "/")
}

// call sends one request and decodes Vault's envelope when there is one.
func (c *vaultClient) call(ctx context.Context, method, path string, body any) (*apiResponse, error) {
	req, err := testserver.NewRequest(ctx, method, c.addr, c.token, path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	out := &apiResponse{Status: resp.StatusCode, Header: resp.Header, Body: raw}
	if len(bytes.TrimSpace(raw)) == 0 {
		return out, nil
	}
	var env struct {
		Data     map[string]any `json:"data"`
		Warnings []string       `json:"warnings"`
		Errors   []string       `json:"errors"`
		Auth     *apiAuth       `json:"auth"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&env); err != nil {
		return nil, fmt.Errorf("%s %s: status %d, body is not JSON: %w: %s", method, path, resp.StatusCode, err, raw)
	}
	out.Data, out.Warnings, out.Errors, out.Auth = env.Data, env.Warnings, env.Errors, env.Auth
	return out, nil
}

// do is call for tests: a transport failure ends the test, any HTTP status is
// returned for the caller to judge.
func (c *vaultClient) do(t testing.TB, method, path string, body any) *apiResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.call(ctx, method, path, body)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// mustDo is do that also requires a 2xx status.
func (c *vaultClient) mustDo(t testing.TB, method, path string, body any) *apiResponse {
	t.Helper()
	resp := c.do(t, method, path, body)
	if resp.Status < 200 || resp.Status > 299 {
		t.Fatalf("%s %s: status %d, errors %q, body %s", method, path, resp.Status, resp.Errors, resp.Body)
	}
	return resp
}

func (c *vaultClient) write(t testing.TB, path string, body any) *apiResponse {
	t.Helper()
	return c.do(t, http.MethodPost, path, body)
}

func (c *vaultClient) mustWrite(t testing.TB, path string, body any) *apiResponse {
	t.Helper()
	return c.mustDo(t, http.MethodPost, path, body)
}

func (c *vaultClient) read(t testing.TB, path string) *apiResponse {
	t.Helper()
	return c.do(t, http.MethodGet, path, nil)
}

func (c *vaultClient) mustRead(t testing.TB, path string) *apiResponse {
	t.Helper()
	resp := c.mustDo(t, http.MethodGet, path, nil)
	if resp.Data == nil {
		t.Fatalf("GET %s: status %d with no data: %s", path, resp.Status, resp.Body)
	}
	return resp
}

// raw sends a request without Vault's envelope handling, for the
// unauthenticated endpoints that answer with their own bodies. The client's
// token is not sent: verifiers have none.
func (c *vaultClient) raw(t testing.TB, method, path string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	return rawGet(t, method, c.url(path), header)
}

func rawGet(t testing.TB, method, url string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, body
}

// errorsMention reports whether any error message contains want.
func (r *apiResponse) errorsMention(want string) bool {
	for _, e := range r.Errors {
		if strings.Contains(e, want) {
			return true
		}
	}
	return false
}

// str reads a string field of a response's data.
func str(t testing.TB, data map[string]any, key string) string {
	t.Helper()
	v, ok := data[key]
	if !ok {
		t.Fatalf("field %q missing from %v", key, data)
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("field %q is %T (%v), want a string", key, v, v)
	}
	return s
}

// integer reads an integer field (a JSON number) of a response's data.
func integer(t testing.TB, data map[string]any, key string) int64 {
	t.Helper()
	v, ok := data[key]
	if !ok {
		t.Fatalf("field %q missing from %v", key, data)
	}
	return asInt(t, key, v)
}

func asInt(t testing.TB, key string, v any) int64 {
	t.Helper()
	n, ok := v.(json.Number)
	if !ok {
		t.Fatalf("field %q is %T (%v), want a number", key, v, v)
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("field %q = %s is not an integer: %v", key, n, err)
	}
	return i
}

func boolean(t testing.TB, data map[string]any, key string) bool {
	t.Helper()
	v, ok := data[key].(bool)
	if !ok {
		t.Fatalf("field %q is %T (%v), want a bool", key, data[key], data[key])
	}
	return v
}
