package jwtrotor

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// The sinks against real stores: versitygw for s3, Apache httpd with
// mod_dav for webdav and Azurite for azure_blob (testserver.S3,
// testserver.WebDAV, testserver.Azure). Each test runs once per store
// through the same table.

// storeUnderTest is one real store with the sinks the tests need.
type storeUnderTest struct {
	name     string
	sink     sink // the publisher's own credentials
	badCreds sink // a wrong secret
	public   func(object string) string
	stop     func()
	restart  func()
	remove   func(object string) error
	// cacheControl reports whether the store keeps the Cache-Control a
	// PUT sends and serves it back: S3 does; mod_dav_fs stores the body
	// alone, and its Cache-Control is the server's configuration.
	cacheControl bool
	// privateReads reports whether the store's API needs the credentials
	// for reads too (the WebDAV server lets anyone read, as verifiers do).
	privateReads bool
	// weakFor is how long after a write the store's ETag stays weak, so
	// that If-Match cannot match it yet: Apache marks an ETag weak for
	// the second after the file changed.
	weakFor time.Duration
	// publicETag reports whether the public URL serves the ETag put
	// returned, and honours If-None-Match with it: not on Cloud Storage,
	// where put returns the generation (testserver.GCSServer).
	publicETag bool
}

func realStores(t *testing.T) []storeUnderTest {
	t.Helper()
	return []storeUnderTest{s3Store(t), webdavStore(t), azureStore(t), gcsStore(t)}
}

func s3Store(t *testing.T) storeUnderTest {
	s := testserver.S3(t)
	p := &publisherEntry{Type: publisherS3, Bucket: s.Bucket, Region: s.Region, Endpoint: s.Endpoint, PathStyle: true,
		AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
	bad := *p
	bad.SecretAccessKey = "not-the-secret"
	return storeUnderTest{name: "s3", sink: mustSink(t, p), badCreds: mustSink(t, &bad), public: s.PublicURL,
		stop: s.Stop, restart: s.Restart, remove: s.DeleteObject, cacheControl: true, privateReads: true, publicETag: true}
}

func webdavStore(t *testing.T) storeUnderTest {
	s := testserver.WebDAV(t)
	p := &publisherEntry{Type: publisherWebDAV, URL: s.URL, Username: s.Username, Password: s.Password}
	bad := *p
	bad.Password = "not-the-password"
	return storeUnderTest{name: "webdav", sink: mustSink(t, p), badCreds: mustSink(t, &bad),
		public: func(o string) string { return s.URL + o }, stop: s.Stop, restart: s.Restart, remove: s.DeleteObject,
		weakFor: 1100 * time.Millisecond, publicETag: true}
}

func gcsStore(t *testing.T) storeUnderTest {
	s := testserver.GCS(t)
	p := &publisherEntry{Type: publisherGCS, Bucket: s.Bucket, Endpoint: s.Endpoint}
	// The emulator accepts any request, so no sink of it is denied
	// (badCreds nil; sink_gcs_test.go has a token endpoint refuse a key).
	sk, err := newSink(p, true)
	if err != nil {
		t.Fatal(err)
	}
	return storeUnderTest{name: "gcs", sink: sk, public: s.PublicURL,
		stop: s.Stop, restart: s.Restart, remove: s.DeleteObject, cacheControl: true}
}

func mustSink(t *testing.T, p *publisherEntry) sink {
	t.Helper()
	s, err := newSink(p, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sinkCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// wantReason fails unless err is a *sinkError with reason.
func wantReason(t *testing.T, what string, err error, reason string) *sinkError {
	t.Helper()
	var se *sinkError
	if !errors.As(err, &se) {
		t.Fatalf("%s: want a *sinkError with reason %s, got %v", what, reason, err)
	}
	if got := sinkReason(err); got != reason {
		t.Fatalf("%s: reason %q (%v), want %q", what, got, err, reason)
	}
	return se
}

// TestSinkRoundTrip: a copy put under a nested name (its collections
// missing on WebDAV) reads back the same through the store's API and
// through its public URL, as application/json, with the ETag put returned;
// on S3 with the Cache-Control put sent.
func TestSinkRoundTrip(t *testing.T) {
	for _, st := range realStores(t) {
		t.Run(st.name, func(t *testing.T) {
			ctx := sinkCtx(t)
			const name = "issuer/a/.well-known/jwks.json"
			body := []byte(`{"keys":[{"kid":"k1"}]}`)
			etag, err := st.sink.put(ctx, name, body, "public, max-age=300", "")
			if err != nil {
				t.Fatal(err)
			}
			if etag == "" {
				t.Fatal("put returned no ETag")
			}
			got, getTag, err := st.sink.get(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, body) || getTag != etag {
				t.Fatalf("get = %q, %q; want %q, %q", got, getTag, body, etag)
			}
			c := outboundClient(5 * time.Second)
			pub, pubTag, err := readPublic(ctx, c, st.public(name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(pub, body) || (st.publicETag && pubTag != etag) {
				t.Fatalf("public read = %q, %q; want %q, %q", pub, pubTag, body, etag)
			}
			resp, err := c.Get(st.public(name))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("public GET Content-Type %q, want application/json", ct)
			}
			cc := resp.Header.Get("Cache-Control")
			if st.cacheControl && cc != "public, max-age=300" {
				t.Errorf("public GET Cache-Control %q, want the one put sent", cc)
			}
			if !st.cacheControl && cc != "" {
				t.Errorf("public GET Cache-Control %q: the store keeps it after all; say so in the table", cc)
			}
			// A verifier's conditional GET of an unchanged copy is a 304
			// (where the public URL serves the ETag put returned).
			if st.publicETag {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.public(name), nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("If-None-Match", etag)
				if resp, err = c.Do(req); err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNotModified {
					t.Errorf("public GET with If-None-Match %s: HTTP %d, want 304", etag, resp.StatusCode)
				}
			}
			// A public read never needs the publisher's credentials, and a
			// missing copy is missing there too.
			_, _, err = readPublic(ctx, c, st.public("issuer/none.json"))
			wantReason(t, "public read of a missing object", err, reasonMissing)
		})
	}
}

// TestSinkConditionalWrites: If-None-Match: * fails on an existing object,
// If-Match on a stale ETag or on an object removed behind the sink's back
// fails, and If-Match on the current ETag replaces the object.
func TestSinkConditionalWrites(t *testing.T) {
	for _, st := range realStores(t) {
		t.Run(st.name, func(t *testing.T) {
			ctx := sinkCtx(t)
			const name = ".well-known/jwks.json"
			first, err := st.sink.put(ctx, name, []byte(`{"keys":[]}`), "no-cache", "")
			if err != nil {
				t.Fatal(err)
			}
			_, err = st.sink.put(ctx, name, []byte(`{"keys":[1]}`), "no-cache", "")
			wantReason(t, "If-None-Match * on an existing object", err, reasonPrecondition)
			time.Sleep(st.weakFor)
			second, err := st.sink.put(ctx, name, []byte(`{"keys":[2]}`), "no-cache", first)
			if err != nil {
				t.Fatalf("If-Match on the current ETag: %v", err)
			}
			if second == first {
				t.Fatalf("a new body kept the ETag %s", first)
			}
			_, err = st.sink.put(ctx, name, []byte(`{"keys":[3]}`), "no-cache", first)
			wantReason(t, "If-Match on a stale ETag", err, reasonPrecondition)
			got, tag, err := st.sink.get(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != `{"keys":[2]}` || tag != second {
				t.Fatalf("after the failed writes get = %s, %s; want the second write", got, tag)
			}
			if err := st.remove(name); err != nil {
				t.Fatal(err)
			}
			_, _, err = st.sink.get(ctx, name)
			wantReason(t, "get of a removed object", err, reasonMissing)
			_, err = st.sink.put(ctx, name, []byte(`{"keys":[4]}`), "no-cache", second)
			wantReason(t, "If-Match on a removed object", err, reasonPrecondition)
		})
	}
}

// TestSinkWrongCredentials: a wrong secret is denied, on S3 and Azure for
// reads too (the WebDAV server lets anyone read, as verifiers do).
func TestSinkWrongCredentials(t *testing.T) {
	for _, st := range realStores(t) {
		if st.badCreds == nil {
			continue
		}
		t.Run(st.name, func(t *testing.T) {
			ctx := sinkCtx(t)
			_, err := st.badCreds.put(ctx, "x.json", []byte(`{}`), "no-cache", "")
			wantReason(t, "put with a wrong secret", err, reasonDenied)
			if st.privateReads {
				if _, err := st.sink.put(ctx, "x.json", []byte(`{}`), "no-cache", ""); err != nil {
					t.Fatal(err)
				}
				_, _, err = st.badCreds.get(ctx, "x.json")
				wantReason(t, "get with a wrong secret", err, reasonDenied)
			}
		})
	}
}

// TestSinkStoreStopped: a stopped store is unreachable, for put and get,
// and the sink works again once it is back.
func TestSinkStoreStopped(t *testing.T) {
	for _, st := range realStores(t) {
		t.Run(st.name, func(t *testing.T) {
			ctx := sinkCtx(t)
			if _, err := st.sink.put(ctx, "a.json", []byte(`{}`), "no-cache", ""); err != nil {
				t.Fatal(err)
			}
			st.stop()
			_, err := st.sink.put(ctx, "b.json", []byte(`{}`), "no-cache", "")
			wantReason(t, "put to a stopped store", err, reasonUnreachable)
			_, _, err = st.sink.get(ctx, "a.json")
			wantReason(t, "get from a stopped store", err, reasonUnreachable)
			st.restart()
			if _, _, err := st.sink.get(ctx, "a.json"); err != nil {
				t.Fatalf("get after the restart: %v", err)
			}
		})
	}
}

// TestSinkStatusReasons: the reason of each status class.
func TestSinkStatusReasons(t *testing.T) {
	for status, want := range map[int]string{
		301: reasonRedirect, 302: reasonRedirect, 307: reasonRedirect, 401: reasonDenied, 403: reasonDenied,
		404: reasonMissing, 412: reasonPrecondition, 400: reasonRejected, 409: reasonRejected, 429: reasonRejected,
		500: reasonServer, 503: reasonServer, 204: reasonGarbage,
	} {
		if got := statusError("put", "o", status); got.Reason != want || got.Status != status {
			t.Errorf("status %d: %+v, want reason %s", status, got, want)
		}
	}
}
