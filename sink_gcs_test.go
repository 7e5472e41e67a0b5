package jwtrotor

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

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
	key, priv := testServiceAccountKey(t, "sa-key-id-sink", tok.URL+"/token")
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
