package jwtrotor

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// privateKeyBody is the base64 of a PEM key without its armour lines: what
// a leak would carry even if the lines were reflowed or escaped.
func privateKeyBody(privatePEM string) []string {
	var out []string
	for _, l := range strings.Split(privatePEM, "\n") {
		if l != "" && !strings.HasPrefix(l, "-----") {
			out = append(out, l)
		}
	}
	return out
}

// scanForCredentials fails when a response or refusal in seen, or a line
// of e's log, holds one of creds. Its positive controls: the scan saw a
// read holding readMarker and a log line of the publisher logged, and
// storage holds each of creds, where a leak would copy it from.
func scanForCredentials(t *testing.T, e *testEnv, seen, creds []string, readMarker, logged string) {
	t.Helper()
	scan := strings.Join(seen, "\n") + "\n" + e.logs.String()
	for _, c := range creds {
		if strings.Contains(scan, c) {
			t.Errorf("credential %q appears in a response, refusal or log line", c)
		}
	}
	if !strings.Contains(scan, readMarker) || !strings.Contains(e.logs.String(), `"publisher":"`+logged+`"`) {
		t.Fatalf("the scan saw no publisher read or log line:\n%.2000s", scan)
	}
	stored := strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
	for _, c := range creds {
		if !strings.Contains(stored, c) {
			t.Fatalf("credential %q is not stored", c)
		}
	}
}

// A type=gcs publisher reads back with bucket and endpoint, without its
// service account key (credentials_json_set only) and without the other
// types' fields; no response, refusal or log line carries the key; an
// update replaces it; the fields of s3 and webdav alone are refused.
func TestGCSPublisherKeyNeverLeaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key, priv := testserver.ServiceAccountKey(t, "sa-key-id-4e7d1c", "")
	e.mustWrite("publishers/gcs", map[string]any{
		"type": "gcs", "bucket": "issuer_keys.tenant-a", "endpoint": "https://storage.private.example.com",
		"credentials_json": key, "prefix": "tenant-a/", "public_url": "https://keys.example.com/tenant-a/", "profile": "gcp",
	})
	got := e.read("publishers/gcs").Data
	want := map[string]any{
		"type": "gcs", "bucket": "issuer_keys.tenant-a", "endpoint": "https://storage.private.example.com",
		"credentials_json_set": true, "ambient_credentials": false,
		"prefix": "tenant-a/", "jwks_path": ".well-known/jwks.json", "ring": "", "public_url": "https://keys.example.com/tenant-a/", "required": false, "profile": "gcp",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("publishers/gcs reads\n%v\nwant\n%v", got, want)
	}

	var seen []string
	record := func(resp *logical.Response, err error) {
		b, _ := json.Marshal(resp)
		seen = append(seen, string(b), fmt.Sprint(err))
	}
	record(e.do(logical.ReadOperation, "publishers/gcs", nil))
	// Refusals, each of a write carrying the key or a variant of it.
	withType := strings.Replace(key, `"service_account"`, `"external_account"`, 1)
	noEmail := strings.Replace(key, `"client_email":"publisher@rotor-test.iam.example.com"`, `"client_email":""`, 1)
	badPEM := strings.Replace(key, "-----BEGIN PRIVATE KEY-----", "-----BEGIN NOTHING-----", 1)
	for _, c := range []struct {
		v    string
		want string
	}{
		{key[:len(key)-1], "not a JSON object"},
		{"[" + key + "]", "not a JSON object"},
		{withType, "not a service account key"},
		{noEmail, "client_email"},
		{badPEM, "not a PEM private key"},
		{strings.Replace(key, `"type"`, `"token_uri":"http://keys.example.com/token","type"`, 1), "token_uri"},
		{strings.Replace(key, `"type"`, `"token_uri":"https://169.254.169.254/token","type"`, 1), "token_uri"},
		{key + strings.Repeat(" ", maxCredentialsJSON), "byte limit"},
	} {
		resp, err := e.write("publishers/gcs", map[string]any{"credentials_json": c.v})
		expect400(t, resp, err, "credentials_json:", c.want)
		record(resp, err)
	}
	for _, data := range []map[string]any{
		{"region": "us-east-1", "credentials_json": key},
		{"url": "https://keys.example.com/", "credentials_json": key},
		{"path_style": true}, {"access_key_id": testAccessKeyID}, {"password": testDAVPassword},
	} {
		resp, err := e.write("publishers/gcs", data)
		expect400(t, resp, err, "applies to type=")
		record(resp, err)
	}
	for _, bucket := range []string{"ab", "Issuer", "-issuer", "issuer..keys", "goog-keys", "my-google-keys", "192.168.1.1", strings.Repeat("a", 64)} {
		resp, err := e.write("publishers/gcs", map[string]any{"bucket": bucket})
		expect400(t, resp, err, "bucket:")
	}
	resp, err := e.write("publishers/gcs", map[string]any{"endpoint": "https://storage.private.example.com/storage/v1/"})
	expect400(t, resp, err, "endpoint:", "has a path")
	resp, err = e.write("publishers/gcs", map[string]any{"endpoint": "http://storage.private.example.com"})
	expect400(t, resp, err, "endpoint:", "loopback")
	// The s3 publisher refuses the gcs key.
	resp, err = e.write("publishers/aws", s3Publisher(map[string]any{"credentials_json": key}))
	expect400(t, resp, err, "credentials_json:", "type=gcs publishers only")
	record(resp, err)

	scanForCredentials(t, e, seen, append([]string{"sa-key-id-4e7d1c"}, privateKeyBody(priv)...), `"credentials_json_set":true`, "gcs")

	// An update replaces the key: the old one is gone from storage.
	key2, _ := testserver.ServiceAccountKey(t, "sa-key-id-rotated", "https://oauth2.example.com/token")
	e.mustWrite("publishers/gcs", map[string]any{"credentials_json": key2})
	stored := strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
	if strings.Contains(stored, "sa-key-id-4e7d1c") || !strings.Contains(stored, "sa-key-id-rotated") {
		t.Fatal("the update did not replace the stored key")
	}
	// Cleared only where ambient credentials are allowed.
	resp, err = e.write("publishers/gcs", map[string]any{"credentials_json": ""})
	expect400(t, resp, err, "credentials_json:", "publishers_allow_ambient_credentials=true")
	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true})
	e.mustWrite("publishers/gcs", map[string]any{"credentials_json": ""})
	if got := e.read("publishers/gcs").Data; got["credentials_json_set"] != false || got["ambient_credentials"] != true {
		t.Fatalf("after clearing: %v", got)
	}
	if strings.Contains(strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n"), "sa-key-id-rotated") {
		t.Fatal("the cleared key is still stored")
	}
}

// A gcs publisher without a key is ambient, whatever its endpoint: one on
// a loopback emulator too is refused unless config allows ambient
// credentials.
func TestGCSPublisherWithoutKeyNeedsConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, endpoint := range []string{"", "http://127.0.0.1:4443", "https://storage.private.example.com"} {
		resp, err := e.write("publishers/gcs", map[string]any{"type": "gcs", "bucket": "issuer-keys", "endpoint": endpoint})
		expect400(t, resp, err, "credentials_json:", "publishers_allow_ambient_credentials=true")
	}
	if len(dump(t, e.storage)) != 0 {
		t.Fatalf("a refused write stored %v", slices.Collect(maps.Keys(dump(t, e.storage))))
	}
	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true})
	e.mustWrite("publishers/gcs", map[string]any{"type": "gcs", "bucket": "issuer-keys", "endpoint": "http://127.0.0.1:4443"})
	if e.read("publishers/gcs").Data["ambient_credentials"] != true {
		t.Fatal("a gcs publisher without a key does not read as ambient")
	}
}

// How a gcs publisher authenticates: with its key when it has one; without,
// unauthenticated only toward a loopback endpoint (an address, or
// localhost), and otherwise with the application default credentials.
func TestGCSAuth(t *testing.T) {
	t.Parallel()
	for endpoint, want := range map[string]string{
		"":                                    gcsAuthDefault,
		"https://storage.private.example.com": gcsAuthDefault,
		"https://127.0.0.1.nip.example.com":   gcsAuthDefault,
		"https://10.0.0.7":                    gcsAuthDefault,
		"http://127.0.0.1:4443":               gcsAuthNone,
		"http://127.8.0.1:4443":               gcsAuthNone,
		"http://[::1]:4443":                   gcsAuthNone,
		"http://localhost:4443":               gcsAuthNone,
		"https://localhost":                   gcsAuthNone,
	} {
		p := &publisherEntry{Type: publisherGCS, Bucket: "b", Endpoint: endpoint}
		if got := gcsAuth(p); got != want {
			t.Errorf("endpoint %q without a key: %s, want %s", endpoint, got, want)
		}
		p.CredentialsJSON = "{}"
		if got := gcsAuth(p); got != gcsAuthKey {
			t.Errorf("endpoint %q with a key: %s, want %s", endpoint, got, gcsAuthKey)
		}
	}
	// Without ambient credentials allowed, no sink is built without a key.
	if _, err := newSink(&publisherEntry{Type: publisherGCS, Bucket: "b", Endpoint: "http://127.0.0.1:4443"}, false); err == nil {
		t.Fatal("a gcs sink without a key was built where ambient credentials are not allowed")
	}
}

// authRecorder is a reverse proxy in front of the emulator that records
// the Authorization header of every request.
type authRecorder struct {
	mu    sync.Mutex
	auths []string
}

func (a *authRecorder) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.auths...)
}

func recordAuth(t *testing.T, target string) (*authRecorder, string) {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	a := &authRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.auths = append(a.auths, r.Header.Get("Authorization"))
		a.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return a, srv.URL
}

// A publisher with a service account key gets its tokens from the key's
// token_uri, through the outbound client, and sends them with every call;
// one without a key, toward a loopback endpoint, sends no Authorization at
// all. When the token endpoint refuses the key, put and get are denied,
// and the failure holds neither the token endpoint's answer nor the key.
func TestGCSSinkAuthentication(t *testing.T) {
	s := testserver.GCS(t)
	rec, endpoint := recordAuth(t, s.Endpoint)
	var mu sync.Mutex
	refuse := false
	tokens := 0
	tok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		tokens++
		if err := r.ParseForm(); err != nil || r.Form.Get("assertion") == "" {
			http.Error(w, "no assertion", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if refuse {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"token-endpoint-says-no"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"rotor-access-token-1","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(tok.Close)
	key, priv := testserver.ServiceAccountKey(t, "sa-key-id-sink", tok.URL+"/token")
	p := &publisherEntry{Type: publisherGCS, Bucket: s.Bucket, Endpoint: endpoint, CredentialsJSON: key, JWKSPath: defaultJWKSObject}
	if err := checkPublisher(p, nil, false); err != nil {
		t.Fatal(err)
	}
	ctx := sinkCtx(t)
	keyed := mustSink(t, p)
	etag, err := keyed.put(ctx, "k.json", []byte(`{"keys":[]}`), "no-cache", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, tag, err := keyed.get(ctx, "k.json"); err != nil || tag != etag {
		t.Fatalf("get = %q, %v; want the ETag %s", tag, err, etag)
	}
	auths := rec.seen()
	if len(auths) < 2 || tokens != 1 {
		t.Fatalf("%d calls and %d token requests; want put and get with one token", len(auths), tokens)
	}
	for _, a := range auths {
		if a != "Bearer rotor-access-token-1" {
			t.Fatalf("a call with a key carried Authorization %q", a)
		}
	}

	open, err := newSink(&publisherEntry{Type: publisherGCS, Bucket: s.Bucket, Endpoint: endpoint}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.put(ctx, "open.json", []byte(`{}`), "no-cache", ""); err != nil {
		t.Fatal(err)
	}
	if a := rec.seen()[len(auths):]; len(a) == 0 || a[0] != "" {
		t.Fatalf("a call without a key toward a loopback endpoint carried Authorization %q", a)
	}

	mu.Lock()
	refuse = true
	mu.Unlock()
	p2 := *p
	denied := mustSink(t, &p2)
	_, err = denied.put(ctx, "d.json", []byte(`{}`), "no-cache", "")
	se := wantReason(t, "put with a key the token endpoint refuses", err, reasonDenied)
	_, _, err = denied.get(ctx, "k.json")
	wantReason(t, "get with a key the token endpoint refuses", err, reasonDenied)
	for _, leak := range append([]string{"token-endpoint-says-no", "invalid_grant", "sa-key-id-sink"}, privateKeyBody(priv)...) {
		if strings.Contains(se.Error(), leak) || strings.Contains(err.Error(), leak) {
			t.Fatalf("the failure %q holds %q", se.Error(), leak)
		}
	}
}
