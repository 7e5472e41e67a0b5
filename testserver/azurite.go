package testserver

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// AzureServer is Azurite's Blob service (make azurite installs the
// version the Makefile pins into bin/azurite) on a loopback port, with its
// data in a directory of its own, telemetry off, and one container whose
// blobs anyone may GET (public access "blob"), as a container serving an
// OIDC issuer's documents does.
type AzureServer struct {
	AccountURL  string // http://127.0.0.1:PORT/devstoreaccount1
	Container   string
	AccountName string // Azurite's development account
	AccountKey  string // its published, well-known key

	store
}

// Azurite's development account and key, the same in every Azurite
// installation (they are in Azurite's documentation).
const (
	azuriteAccount = "devstoreaccount1"
	azuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azure starts an AzureServer for one test and stops it when the test
// ends. A missing bin/azurite fails the test with the make target to run.
func Azure(t testing.TB) *AzureServer {
	t.Helper()
	bin, dir, addr := prepareStore(t, filepath.Join("bin", "azurite", "node_modules", ".bin", "azurite-blob"), "azurite", "jwt-rotor-azure-")
	host, port, _ := strings.Cut(addr, ":")
	s := &AzureServer{Container: "jwt-rotor-test", AccountName: azuriteAccount, AccountKey: azuriteKey}
	s.store = store{t: t, name: "azurite", dir: dir, addr: addr, logPath: filepath.Join(dir, "azurite.log"),
		// --skipApiVersionCheck: the SDK may ask for a newer service
		// version than this Azurite knows; --loose: headers it does not
		// implement are ignored rather than refused.
		args: []string{bin, "--blobHost", host, "--blobPort", port, "--location", filepath.Join(dir, "data"),
			"--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"}}
	s.AccountURL = "http://" + addr + "/" + azuriteAccount
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := s.signed(http.MethodPut, s.Container, "restype=container", map[string]string{"x-ms-blob-public-access": "blob"}); err != nil {
		t.Fatalf("create container: %v", err)
	}
	return s
}

// PublicURL is the URL through which anyone reads blob name.
func (s *AzureServer) PublicURL(name string) string {
	return s.AccountURL + "/" + s.Container + "/" + name
}

// DeleteObject deletes blob name behind the publisher's back, with the
// account's key.
func (s *AzureServer) DeleteObject(name string) error {
	return s.signed(http.MethodDelete, s.Container+"/"+name, "", nil)
}

// signed sends one body-less request under the account, authorized with
// Shared Key, and fails on a status other than 2xx. path is relative to
// the account; query has at most one parameter.
func (s *AzureServer) signed(method, path, query string, headers map[string]string) error {
	u := s.AccountURL + "/" + path
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("x-ms-date", time.Now().UTC().Format(http.TimeFormat))
	req.Header.Set("x-ms-version", "2021-12-02")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	var names []string
	for k := range req.Header {
		if lk := strings.ToLower(k); strings.HasPrefix(lk, "x-ms-") {
			names = append(names, lk)
		}
	}
	sort.Strings(names)
	canonHeaders := ""
	for _, k := range names {
		canonHeaders += k + ":" + req.Header.Get(k) + "\n"
	}
	// Path-style URLs: the account appears in the resource twice, once as
	// the account and once as the path's first segment.
	resource := "/" + s.AccountName + req.URL.EscapedPath()
	if k, v, ok := strings.Cut(query, "="); ok {
		resource += "\n" + strings.ToLower(k) + ":" + v
	}
	// VERB, then eleven standard headers (all empty here), then the
	// canonicalized headers and resource.
	toSign := method + "\n" + strings.Repeat("\n", 11) + canonHeaders + resource
	key, err := base64.StdEncoding.DecodeString(s.AccountKey)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(toSign))
	req.Header.Set("Authorization", "SharedKey "+s.AccountName+":"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, u, resp.StatusCode, msg)
	}
	return nil
}
