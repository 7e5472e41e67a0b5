package tests

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// The Cloud Storage store of the publishing tests: the emulator
// (testserver.GCS), written to with a service account key whose token_uri
// is a token endpoint of the test's own on a loopback address, so the
// plugin takes the path it takes against Cloud Storage (a signed JWT
// exchanged for an access token, sent with every call). The emulator does
// not check the token; the token endpoint counts the exchanges.

// gcsTokenEndpoint serves OAuth 2.0 JWT-bearer exchanges: an access token
// for any assertion, or, once refuse is set, a 400 invalid_grant.
type gcsTokenEndpoint struct {
	URL       string
	exchanges atomic.Int64
	refuse    atomic.Bool
}

func newGCSTokenEndpoint(t *testing.T) *gcsTokenEndpoint {
	t.Helper()
	e := &gcsTokenEndpoint{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.exchanges.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if r.ParseForm() != nil || r.Form.Get("assertion") == "" || e.refuse.Load() {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"the token endpoint refuses this key"}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"rotor-acceptance-token","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	e.URL = srv.URL + "/token"
	return e
}

// gcsServiceAccountKey is a service account key file of a fresh RSA key
// with the private_key_id id, exchanged at tokenURI.
func gcsServiceAccountKey(t testing.TB, id, tokenURI string) string {
	t.Helper()
	key, _ := testserver.ServiceAccountKey(t, id, tokenURI)
	return key
}

// gcsStore is the emulator with a token endpoint and a key exchanged there.
type gcsStore struct {
	*testserver.GCSServer
	tokens *gcsTokenEndpoint
	key    string
}

func startGCSStore(t *testing.T) *gcsStore {
	t.Helper()
	tok := newGCSTokenEndpoint(t)
	return &gcsStore{GCSServer: testserver.GCS(t), tokens: tok, key: gcsServiceAccountKey(t, "acceptance-key", tok.URL)}
}

// fields are a gcs publisher's settings for this store.
func (s *gcsStore) fields() map[string]any {
	return map[string]any{"type": "gcs", "bucket": s.Bucket, "endpoint": s.Endpoint, "credentials_json": s.key}
}

func gcsPublished(t *testing.T) (publishedStore, *gcsStore) {
	t.Helper()
	s := startGCSStore(t)
	return publishedStore{name: "gcs", base: s.PublicURL(copyPrefix), fields: s.fields()}, s
}

// faultGCSPublisher writes a gcs publisher of the store s under prefix, its
// public_url the bucket's public URL of prefix; extra overrides.
func faultGCSPublisher(t testing.TB, c *vaultClient, m *mount, name string, s *gcsStore, prefix string, extra map[string]any) {
	t.Helper()
	fields := s.fields()
	fields["prefix"], fields["public_url"] = prefix, s.PublicURL(prefix)
	for k, v := range extra {
		fields[k] = v
	}
	faultWritePublisher(t, c, m, name, fields)
}

// gcsKeyMarkers are two distinctive parts of a key file from
// gcsServiceAccountKey: its private_key_id and a line of its PEM private
// key, which a leak of the file or of the key would carry.
func gcsKeyMarkers(t testing.TB, key string) (id, pemLine string) {
	t.Helper()
	var f struct {
		ID         string `json:"private_key_id"`
		PrivateKey string `json:"private_key"`
	}
	if err := json.Unmarshal([]byte(key), &f); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(f.PrivateKey, "\n")
	if f.ID == "" || len(lines) < 3 {
		t.Fatalf("not a key of gcsServiceAccountKey")
	}
	return f.ID, lines[1]
}
