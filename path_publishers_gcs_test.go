package jwtrotor

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// testServiceAccountKey is a service account key file of a fresh RSA key,
// its token_uri tokenURI ("" leaves it out), with a distinctive
// private_key_id so a scan finds any copy of the file. It returns the key
// file and its PEM private key.
func testServiceAccountKey(t testing.TB, id, tokenURI string) (keyJSON, privatePEM string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	privatePEM = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	f := map[string]string{
		"type": "service_account", "project_id": "rotor-test", "private_key_id": id,
		"private_key": privatePEM, "client_email": "publisher@rotor-test.iam.example.com", "client_id": "1",
	}
	if tokenURI != "" {
		f["token_uri"] = tokenURI
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), privatePEM
}

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

// A type=gcs publisher reads back with bucket and endpoint, without its
// service account key (credentials_json_set only) and without the other
// types' fields; no response, refusal or log line carries the key; an
// update replaces it; the fields of s3 and webdav alone are refused.
func TestGCSPublisherKeyNeverLeaves(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	key, priv := testServiceAccountKey(t, "sa-key-id-4e7d1c", "")
	e.mustWrite("publishers/gcs", map[string]any{
		"type": "gcs", "bucket": "issuer_keys.tenant-a", "endpoint": "https://storage.private.example.com",
		"credentials_json": key, "prefix": "tenant-a/", "public_url": "https://keys.example.com/tenant-a/",
	})
	got := e.read("publishers/gcs").Data
	want := map[string]any{
		"type": "gcs", "bucket": "issuer_keys.tenant-a", "endpoint": "https://storage.private.example.com",
		"credentials_json_set": true, "ambient_credentials": false,
		"prefix": "tenant-a/", "jwks_path": ".well-known/jwks.json", "ring": "", "public_url": "https://keys.example.com/tenant-a/", "required": false,
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

	scan := strings.Join(seen, "\n") + "\n" + e.logs.String()
	secrets := append([]string{"sa-key-id-4e7d1c"}, privateKeyBody(priv)...)
	for _, s := range secrets {
		if strings.Contains(scan, s) {
			t.Fatalf("the service account key (%.20s...) appears in a response, refusal or log line", s)
		}
	}
	// Positive controls: the scan saw the read and the log, and the key is
	// stored, where a leak would copy it from.
	if !strings.Contains(scan, `"credentials_json_set":true`) || !strings.Contains(e.logs.String(), `"publisher":"gcs"`) {
		t.Fatalf("the scan saw no publisher read or log line:\n%.2000s", scan)
	}
	stored := strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
	if !strings.Contains(stored, "sa-key-id-4e7d1c") {
		t.Fatal("the service account key is not stored")
	}

	// An update replaces the key: the old one is gone from storage.
	key2, _ := testServiceAccountKey(t, "sa-key-id-rotated", "https://oauth2.example.com/token")
	e.mustWrite("publishers/gcs", map[string]any{"credentials_json": key2})
	stored = strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
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
