package jwtrotor

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// The outbound client's guards, against small local servers that
// misbehave on purpose: each guard is checked through every way a sink
// reaches the network (S3 put and get, WebDAV put and get, Azure Blob put
// with a shared key and get with a SAS token, a public read).

const (
	testSecret   = "secret-never-shown-0123456789"
	testPassword = "password-never-shown"
	// testAccountKey is base64, as a storage account key is; testSASSig is
	// the signature of testSAS.
	testAccountKey = "YWNjb3VudC1rZXktbmV2ZXItc2hvd24tMDEyMzQ1Njc4OQ=="
	testSASSig     = "sas-signature-never-shown"
	testSAS        = "sv=2021-12-02&sr=c&sp=rcw&sig=" + testSASSig
)

// sinkCall is one way of reaching base, the URL of a local server.
type sinkCall struct {
	name string
	call func(ctx context.Context, t *testing.T, base string) error
}

func sinkCalls() []sinkCall {
	s3For := func(t *testing.T, base string) sink {
		return mustSink(t, &publisherEntry{Type: publisherS3, Bucket: "bucket", Region: "us-east-1", Endpoint: base,
			PathStyle: true, AccessKeyID: "AKIDTEST", SecretAccessKey: testSecret})
	}
	davFor := func(t *testing.T, base string) sink {
		return mustSink(t, &publisherEntry{Type: publisherWebDAV, URL: base + "/dav/", Username: "u", Password: testPassword})
	}
	azFor := func(t *testing.T, base string, sas bool) sink {
		p := &publisherEntry{Type: publisherAzure, AccountURL: base + "/acct", Container: "keys"}
		if sas {
			p.SASToken = testSAS
		} else {
			p.AccountName, p.AccountKey = "acct", testAccountKey
		}
		return mustSink(t, p)
	}
	return []sinkCall{
		{"azure_blob put", func(ctx context.Context, t *testing.T, base string) error {
			_, err := azFor(t, base, false).put(ctx, "k/jwks.json", []byte(`{}`), "no-cache", `"e1"`)
			return err
		}},
		{"azure_blob get", func(ctx context.Context, t *testing.T, base string) error {
			_, _, err := azFor(t, base, true).get(ctx, "k/jwks.json")
			return err
		}},
		{"s3 put", func(ctx context.Context, t *testing.T, base string) error {
			_, err := s3For(t, base).put(ctx, "k/jwks.json", []byte(`{}`), "no-cache", "")
			return err
		}},
		{"s3 get", func(ctx context.Context, t *testing.T, base string) error {
			_, _, err := s3For(t, base).get(ctx, "k/jwks.json")
			return err
		}},
		{"webdav put", func(ctx context.Context, t *testing.T, base string) error {
			_, err := davFor(t, base).put(ctx, "k/jwks.json", []byte(`{}`), "no-cache", `"e1"`)
			return err
		}},
		{"webdav get", func(ctx context.Context, t *testing.T, base string) error {
			_, _, err := davFor(t, base).get(ctx, "k/jwks.json")
			return err
		}},
		{"read_public", func(ctx context.Context, t *testing.T, base string) error {
			_, _, err := readPublic(ctx, outboundClient(5*time.Second), base+"/k/jwks.json")
			return err
		}},
	}
}

// TestSinkRedirectNotFollowed: a 302 is a redirect failure with its
// status, and the place it points to is never asked.
func TestSinkRedirectNotFollowed(t *testing.T) {
	var followed atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		followed.Add(1)
	}))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusFound)
	}))
	defer srv.Close()
	for _, c := range sinkCalls() {
		err := c.call(sinkCtx(t), t, srv.URL)
		if se := wantReason(t, c.name, err, reasonRedirect); se.Status != http.StatusFound {
			t.Errorf("%s: status %d, want 302", c.name, se.Status)
		}
	}
	if n := followed.Load(); n != 0 {
		t.Fatalf("the redirect's target was asked %d times", n)
	}
}

// TestSinkErrorHoldsNoBody: a store's error answers, whose bodies hold a
// marker (as an S3 error document's message would), give errors that hold
// neither the marker nor a credential.
func TestSinkErrorHoldsNoBody(t *testing.T) {
	const marker = "MARKER-from-the-store-body"
	for _, status := range []int{http.StatusInternalServerError, http.StatusForbidden, http.StatusBadRequest} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + marker + `</Code><Message>` +
				marker + `</Message><RequestId>` + marker + `</RequestId></Error>`))
		}))
		for _, c := range sinkCalls() {
			err := c.call(sinkCtx(t), t, srv.URL)
			if err == nil {
				t.Fatalf("%s: no error from HTTP %d", c.name, status)
			}
			if se := wantReason(t, c.name, err, statusError("", "", status).Reason); se.Status != status {
				t.Errorf("%s: status %d, want %d", c.name, se.Status, status)
			}
			for _, bad := range []string{marker, testSecret, testPassword, testAccountKey, testSASSig} {
				if strings.Contains(err.Error(), bad) {
					t.Errorf("%s: HTTP %d error %q holds %q", c.name, status, err, bad)
				}
			}
		}
		srv.Close()
	}
}

// TestSinkTimeout: a store that never answers is a timeout, reported
// within the context's deadline (the S3 SDK's retry included).
func TestSinkTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	for _, c := range sinkCalls() {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		err := c.call(ctx, t, srv.URL)
		cancel()
		wantReason(t, c.name, err, reasonTimeout)
		// Stopped by the caller's deadline, not by the client's own
		// per-request timeout.
		if d := time.Since(start); d >= sinkCallTimeout {
			t.Errorf("%s: took %v: the 300ms deadline did not end it", c.name, d)
		}
	}
}

// TestSinkBodyCapped: an answer longer than maxSinkBody is garbage, read
// no further.
func TestSinkBodyCapped(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"e1"`)
		w.Write([]byte(strings.Repeat("x", maxSinkBody+1)))
	}))
	defer srv.Close()
	for _, c := range sinkCalls() {
		if strings.HasSuffix(c.name, "put") {
			continue
		}
		wantReason(t, c.name, c.call(sinkCtx(t), t, srv.URL), reasonGarbage)
	}
	// A body of exactly the cap is read whole.
	exact := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", maxSinkBody)))
	}))
	defer exact.Close()
	body, _, err := readPublic(sinkCtx(t), outboundClient(5*time.Second), exact.URL+"/")
	if err != nil || len(body) != maxSinkBody {
		t.Fatalf("a body of exactly %d bytes: %d bytes, %v", maxSinkBody, len(body), err)
	}
}

// TestSinkRefusedAddresses: an address checkOutboundHost refuses, given
// literally (so the dialer sees it as it is) in every form that reaches
// it, is refused before any connection; plain http goes to loopback only.
func TestSinkRefusedAddresses(t *testing.T) {
	for _, base := range []string{
		"https://169.254.169.254",
		"https://[::ffff:169.254.169.254]",
		"https://[64:ff9b::a9fe:a9fe]",
		"https://[fd00:ec2::254]",
		"https://100.100.100.200",
		"https://[fe80::1]",
		"https://0.0.0.0:9",
		"http://192.0.2.1",
		"http://[2001:db8::1]",
	} {
		for _, c := range sinkCalls() {
			// A connection tried would end as unreachable or timeout,
			// never as refused_address.
			err := c.call(sinkCtx(t), t, base)
			wantReason(t, c.name+" to "+base, err, reasonRefusedAddr)
		}
	}
}

// TestCheckDialAddr: the dialer's check of a resolved address, the one a
// host name resolving to a refused address meets.
func TestCheckDialAddr(t *testing.T) {
	for _, tc := range []struct {
		addr    string
		plain   bool
		refused bool
	}{
		{"169.254.169.254:443", false, true},
		{"169.254.0.1:80", true, true},
		{"[fe80::1]:443", false, true},
		{"[fe80::1%eth0]:443", false, true},
		{"[::ffff:169.254.169.254]:443", false, true},
		{"[64:ff9b::a9fe:a9fe]:443", false, true},
		{"[fd00:ec2::254]:443", false, true},
		{"100.100.100.200:443", false, true},
		{"224.0.0.1:443", false, true},
		{"[ff02::1]:443", false, true},
		{"0.0.0.0:443", false, true},
		{"[::]:443", false, true},
		{"not-an-address", false, true},
		{"10.1.2.3:80", true, true},
		{"[2001:db8::1]:80", true, true},
		{"10.1.2.3:443", false, false},
		{"[2001:db8::1]:443", false, false},
		{"127.0.0.1:80", true, false},
		{"[::1]:80", true, false},
		{"[::ffff:127.0.0.1]:80", true, false},
	} {
		err := checkDialAddr(tc.addr, tc.plain)
		var refused *refusedAddrError
		if got := errors.As(err, &refused); got != tc.refused {
			t.Errorf("checkDialAddr(%s, plain=%v) = %v, want refused=%v", tc.addr, tc.plain, err, tc.refused)
		}
	}
}

// TestNewSinkAmbient: a publisher without credentials of its own gets no
// sink unless the mount allows ambient credentials.
func TestNewSinkAmbient(t *testing.T) {
	for _, p := range []*publisherEntry{
		{Type: publisherS3, Bucket: "bucket", Region: "us-east-1"},
		{Type: publisherWebDAV, URL: "https://dav.example.com/"},
	} {
		if _, err := newSink(p, false); err == nil {
			t.Errorf("%s without credentials: a sink with ambient credentials refused", p.Type)
		}
		if _, err := newSink(p, true); err != nil {
			t.Errorf("%s without credentials, ambient allowed: %v", p.Type, err)
		}
	}
	// azure_blob has no ambient credentials, allowed or not.
	if _, err := newSink(&publisherEntry{Type: publisherAzure, AccountURL: "https://a.blob.core.windows.net", Container: "keys"}, true); err == nil {
		t.Error("azure_blob without credentials got a sink with ambient credentials allowed")
	}
	if _, err := newSink(&publisherEntry{Type: "ftp", Username: "u", Password: "p"}, true); err == nil {
		t.Error("an unknown type got a sink")
	}
}

// TestSinkAmbientS3: with ambient credentials the SDK's chain finds them
// (here in the environment), and the S3 calls still go through the
// guarded client: a refused endpoint is refused, a real store is written.
func TestSinkAmbientS3(t *testing.T) {
	st := testserver.S3(t)
	t.Setenv("AWS_ACCESS_KEY_ID", st.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", st.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	p := &publisherEntry{Type: publisherS3, Bucket: st.Bucket, Region: st.Region, Endpoint: st.Endpoint, PathStyle: true}
	s, err := newSink(p, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.put(sinkCtx(t), "ambient.json", []byte(`{}`), "no-cache", ""); err != nil {
		t.Fatalf("put with the environment's credentials: %v", err)
	}
	p.Endpoint = "https://169.254.169.254"
	if s, err = newSink(p, true); err != nil {
		t.Fatal(err)
	}
	_, err = s.put(sinkCtx(t), "ambient.json", []byte(`{}`), "no-cache", "")
	wantReason(t, "put to a metadata address with ambient credentials", err, reasonRefusedAddr)
}

// TestSinkS3ConditionalConflict: AWS answers a conditional write that raced
// another with 409 ConditionalRequestConflict; the upload code must treat
// it as a failed condition (the object is not the one expected), not as a
// rejection of the request.
func TestSinkS3ConditionalConflict(t *testing.T) {
	for _, code := range []string{"ConditionalRequestConflict", "OperationAborted"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>m</Message></Error>`))
		}))
		s := mustSink(t, &publisherEntry{Type: publisherS3, Bucket: "bucket", Region: "us-east-1", Endpoint: srv.URL,
			PathStyle: true, AccessKeyID: "AKIDTEST", SecretAccessKey: testSecret})
		_, err := s.put(sinkCtx(t), "k/jwks.json", []byte(`{}`), "no-cache", `"e1"`)
		want := reasonPrecondition
		if code != "ConditionalRequestConflict" {
			want = reasonRejected
		}
		wantReason(t, code, err, want)
		srv.Close()
	}
}
