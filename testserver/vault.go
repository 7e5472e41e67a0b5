package testserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The headers a mount passes through Vault for the JWKS's HTTP caching.
var (
	ResponseHeaders = []string{"ETag", "Last-Modified"}
	RequestHeaders  = []string{"If-None-Match", "User-Agent"}
)

// CatalogEntry is the body that registers the plugin in Vault's catalog by
// its checksum and version, the way an operator registers it, with env for
// its process (none when nil).
func CatalogEntry(sha, version string, env []string) map[string]any {
	if env == nil {
		env = []string{}
	}
	return map[string]any{"sha256": sha, "command": PluginName, "version": version, "env": env}
}

// MountInput is the body that enables the plugin pinned to version. Vault's
// HTTP API takes the pinned version in config: a top-level plugin_version
// is ignored and the newest registered version runs.
func MountInput(version string) map[string]any {
	return map[string]any{"type": PluginName, "config": map[string]any{"plugin_version": version}}
}

// TuneInput is the body that tunes a mount so that the JWKS caching headers
// pass through Vault.
func TuneInput() map[string]any {
	return map[string]any{
		"allowed_response_headers":    ResponseHeaders,
		"passthrough_request_headers": RequestHeaders,
	}
}

// Client is the little of Vault's HTTP API the harness needs itself; the
// tests keep their own clients.
type Client struct {
	Addr  string // http://127.0.0.1:PORT
	Token string
}

// NewRequest builds a request to Vault's HTTP API at addr: path under /v1/,
// body (when not nil) as JSON, token (when not empty) in X-Vault-Token.
func NewRequest(ctx context.Context, method, addr, token, path string, body any) (*http.Request, error) {
	var reader io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		reader = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, addr+"/v1/"+strings.TrimPrefix(path, "/"), reader)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("X-Vault-Token", token)
	}
	return req, nil
}

// Call sends one request with a JSON body (none when nil) and returns the
// status and the response body.
func (c Client) Call(ctx context.Context, method, path string, body any) (int, []byte, error) {
	req, err := NewRequest(ctx, method, c.Addr, c.Token, path, body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// Must sends one request, bounded by 60 seconds, and requires a 2xx answer.
func (c Client) Must(method, path string, body any) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	status, out, err := c.Call(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if status < 200 || status > 299 {
		return nil, fmt.Errorf("%s %s: status %d: %s", method, path, status, bytes.TrimSpace(out))
	}
	return out, nil
}

// RegisterPlugin registers the plugin by checksum and version (env for its
// process, none when nil) and reads the catalog back: it must hold that
// version.
func RegisterPlugin(c Client, sha, version string, env []string) error {
	if _, err := c.Must(http.MethodPut, "sys/plugins/catalog/secret/"+PluginName, CatalogEntry(sha, version, env)); err != nil {
		return fmt.Errorf("register the plugin: %w", err)
	}
	out, err := c.Must(http.MethodGet, "sys/plugins/catalog/secret/"+PluginName+"?version="+url.QueryEscape(version), nil)
	if err != nil {
		return fmt.Errorf("read the plugin's catalog entry: %w", err)
	}
	var entry struct {
		Data struct {
			Version string `json:"version"`
		} `json:"data"`
	}
	if err := json.Unmarshal(out, &entry); err != nil || entry.Data.Version != version {
		return fmt.Errorf("the catalog holds version %q, want %q (%v)", entry.Data.Version, version, err)
	}
	return nil
}

// MountPlugin enables the plugin at path, pinned to version, and tunes the
// mount for the JWKS caching headers. The plugin's config is the caller's.
func MountPlugin(c Client, path, version string) error {
	if _, err := c.Must(http.MethodPost, "sys/mounts/"+path, MountInput(version)); err != nil {
		return fmt.Errorf("enable %s: %w", path, err)
	}
	if _, err := c.Must(http.MethodPost, "sys/mounts/"+path+"/tune", TuneInput()); err != nil {
		return fmt.Errorf("tune %s: %w", path, err)
	}
	return nil
}
