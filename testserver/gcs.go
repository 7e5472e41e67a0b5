package testserver

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
)

// GCSServer is fake-gcs-server, a Cloud Storage emulator (make
// fake-gcs-server builds bin/fake-gcs-server from the version pinned in
// tools/fake-gcs-server), on a loopback port over plain http, with a
// filesystem backend in a directory of its own (so a restart keeps the
// objects) and one bucket.
//
// What it does as Cloud Storage does, as v1.56.1 was seen to: it serves
// the JSON API at <Endpoint>/storage/v1/ without checking any
// authentication; it honours ifGenerationMatch on uploads, both 0 (the
// object must not exist) and a generation, answering 412
// conditionNotMet; it reports each object's generation; and it serves
// every object without authentication at <Endpoint>/<bucket>/<object>,
// the layout of Cloud Storage's public URLs, with the Content-Type and the
// Cache-Control the upload set. Where it differs: it ignores If-None-Match
// on those public reads (a 200, never a 304), and its ETag there is the
// body's MD5, not the generation, so two uploads of the same body share
// it; and it accepts any credentials, so a wrong key is not refused.
type GCSServer struct {
	Endpoint string // http://127.0.0.1:PORT
	Bucket   string
	Root     string // the filesystem backend's directory

	store
}

// GCS starts a GCSServer for one test and stops it when the test ends. A
// missing bin/fake-gcs-server fails the test with the make target to run.
func GCS(t testing.TB) *GCSServer {
	t.Helper()
	bin, dir, addr := prepareStore(t, filepath.Join("bin", "fake-gcs-server"), "fake-gcs-server", "jwt-rotor-gcs-")
	s := &GCSServer{Bucket: "jwt-rotor-test", Root: filepath.Join(dir, "data")}
	s.store = store{t: t, name: "fake-gcs-server", dir: dir, addr: addr,
		logPath: filepath.Join(dir, "fake-gcs-server.log")}
	s.Endpoint = "http://" + s.addr
	_, port, _ := net.SplitHostPort(s.addr)
	s.args = []string{bin, "-scheme", "http", "-host", "127.0.0.1", "-port", port,
		"-public-host", s.addr, "-external-url", s.Endpoint,
		"-backend", "filesystem", "-filesystem-root", s.Root, "-log-level", "warn"}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := s.call(http.MethodPost, "/storage/v1/b?project=jwt-rotor", fmt.Appendf(nil, `{"name":%q}`, s.Bucket)); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	return s
}

// PublicURL is the URL through which anyone reads object, as Cloud
// Storage's https://storage.googleapis.com/<bucket>/<object>.
func (s *GCSServer) PublicURL(object string) string {
	return s.Endpoint + "/" + s.Bucket + "/" + object
}

// DeleteObject removes object behind the plugin's back, through the API.
func (s *GCSServer) DeleteObject(object string) error {
	return s.call(http.MethodDelete, "/storage/v1/b/"+s.Bucket+"/o/"+url.PathEscape(object), nil)
}

// call sends one unauthenticated API request and fails on a status other
// than 200 or 204.
func (s *GCSServer) call(method, path string, body []byte) error {
	req, err := http.NewRequest(method, s.Endpoint+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doOK(req, method+" "+path)
}

// ServiceAccountKey is a service account key file of a fresh RSA key, as
// Google issues them, with the private_key_id id and, unless tokenURI is
// "", the token_uri tokenURI (where its JWTs are exchanged for access
// tokens). It returns the file and its PEM private key.
func ServiceAccountKey(t testing.TB, id, tokenURI string) (keyJSON, privatePEM string) {
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
		"type": "service_account", "project_id": "rotor-test", "private_key_id": id, "private_key": privatePEM,
		"client_email": "publisher@rotor-test.iam.example.com", "client_id": "1",
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
