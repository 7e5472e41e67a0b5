package testserver

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// S3Server is a versitygw S3 gateway (make versitygw builds bin/versitygw
// from the version pinned in tools/versitygw) on a loopback port, with a
// posix backend in a directory of its own and one bucket whose objects
// anyone may GET (a bucket policy allowing s3:GetObject to every
// principal), as a public bucket serves verifiers.
type S3Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	Region    string
	AccessKey string // the gateway's root account
	SecretKey string
	Root      string // the posix backend's directory; the bucket is Root/Bucket

	store
}

// S3 starts an S3Server for one test and stops it when the test ends. A
// missing bin/versitygw fails the test with the make target to run.
func S3(t testing.TB) *S3Server {
	t.Helper()
	bin, dir, addr := prepareStore(t, filepath.Join("bin", "versitygw"), "versitygw", "jwt-rotor-s3-")
	s := &S3Server{
		Bucket: "jwt-rotor-test", Region: "us-east-1",
		AccessKey: "rotor-test-access", SecretKey: "rotor-test-secret-0123456789",
		Root: filepath.Join(dir, "posix"),
	}
	if err := os.Mkdir(s.Root, 0o755); err != nil {
		t.Fatal(err)
	}
	s.store = store{t: t, name: "versitygw", dir: dir, addr: addr,
		logPath: filepath.Join(dir, "versitygw.log")}
	s.Endpoint = "http://" + s.addr
	s.args = []string{bin, "--port", s.addr, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--quiet", "posix", s.Root}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	if err := s.signed(http.MethodPut, "/"+s.Bucket, "", nil); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::%s/*"}]}`, s.Bucket)
	if err := s.signed(http.MethodPut, "/"+s.Bucket, "policy", []byte(policy)); err != nil {
		t.Fatalf("put bucket policy: %v", err)
	}
	return s
}

// PublicURL is the path-style URL through which anyone reads key.
func (s *S3Server) PublicURL(key string) string {
	return s.Endpoint + "/" + s.Bucket + "/" + key
}

// DeleteObject removes key behind the gateway's back, from the posix
// backend's directory.
func (s *S3Server) DeleteObject(key string) error {
	return os.Remove(filepath.Join(s.Root, s.Bucket, filepath.FromSlash(key)))
}

// signed sends one request signed with AWS Signature Version 4 as the
// root account, and fails on a status other than 200.
func (s *S3Server) signed(method, path, query string, body []byte) error {
	req, err := http.NewRequest(method, s.Endpoint+path+"?"+query, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if query == "" {
		req.URL.RawQuery = ""
	}
	now := time.Now().UTC()
	amzDate := now.Format("20060102T150405Z")
	day := now.Format("20060102")
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	req.Header.Set("x-amz-date", amzDate)
	req.Header.Set("x-amz-content-sha256", payload)
	canonQuery := ""
	if query != "" {
		canonQuery = query + "="
	}
	signedHeaders := "host;x-amz-content-sha256;x-amz-date"
	canonical := strings.Join([]string{method, path, canonQuery,
		"host:" + req.URL.Host + "\nx-amz-content-sha256:" + payload + "\nx-amz-date:" + amzDate + "\n",
		signedHeaders, payload}, "\n")
	scope := day + "/" + s.Region + "/s3/aws4_request"
	csum := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(csum[:])
	key := []byte("AWS4" + s.SecretKey)
	for _, part := range []string{day, s.Region, "s3", "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential="+s.AccessKey+"/"+scope+
		", SignedHeaders="+signedHeaders+", Signature="+hex.EncodeToString(hmacSHA256(key, toSign)))
	return doOK(req, method+" "+path+"?"+query)
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}
