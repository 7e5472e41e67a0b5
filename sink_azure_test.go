package jwtrotor

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// azureStore is Azurite's Blob service with a shared-key publisher, for
// the table of real stores (sink_test.go).
func azureStore(t *testing.T) storeUnderTest {
	s := testserver.Azure(t)
	p := &publisherEntry{Type: publisherAzure, AccountURL: s.AccountURL, Container: s.Container,
		AccountName: s.AccountName, AccountKey: s.AccountKey}
	bad := *p
	bad.AccountKey = "bm90LXRoZS1rZXktb2YtdGhpcy1hY2NvdW50LTAxMjM0NTY3ODk="
	return storeUnderTest{name: "azure_blob", sink: mustSink(t, p), badCreds: mustSink(t, &bad), public: s.PublicURL,
		// The container is public (as one serving verifiers is), and
		// Azurite serves a public blob to a GET whatever key signed it.
		stop: s.Stop, restart: s.Restart, remove: s.DeleteObject, cacheControl: true}
}

// TestSinkAzureSAS: a publisher with a SAS token scoped to the container
// (read, create, write) writes conditionally and reads back through
// Azurite; a token signed with another key is denied.
func TestSinkAzureSAS(t *testing.T) {
	s := testserver.Azure(t)
	sasFor := func(key string) string {
		cred, err := blob.NewSharedKeyCredential(s.AccountName, key)
		if err != nil {
			t.Fatal(err)
		}
		q, err := sas.BlobSignatureValues{
			Protocol:      sas.ProtocolHTTPSandHTTP,
			ExpiryTime:    time.Now().Add(time.Hour).UTC(),
			Permissions:   (&sas.ContainerPermissions{Read: true, Create: true, Write: true}).String(),
			ContainerName: s.Container,
		}.SignWithSharedKey(cred)
		if err != nil {
			t.Fatal(err)
		}
		return "?" + q.Encode()
	}
	p := &publisherEntry{Type: publisherAzure, AccountURL: s.AccountURL, Container: s.Container, SASToken: sasFor(s.AccountKey)}
	if err := checkAzure(p); err != nil {
		t.Fatalf("a SAS token from the SDK refused: %v", err)
	}
	sk := mustSink(t, p)
	ctx := sinkCtx(t)
	const name = "sas/.well-known/jwks.json"
	etag, err := sk.put(ctx, name, []byte(`{"keys":[]}`), "no-cache", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = sk.put(ctx, name, []byte(`{"keys":[1]}`), "no-cache", "")
	wantReason(t, "If-None-Match * on an existing blob, with a SAS", err, reasonPrecondition)
	next, err := sk.put(ctx, name, []byte(`{"keys":[2]}`), "no-cache", etag)
	if err != nil {
		t.Fatalf("If-Match on the current ETag, with a SAS: %v", err)
	}
	got, tag, err := sk.get(ctx, name)
	if err != nil || string(got) != `{"keys":[2]}` || tag != next {
		t.Fatalf("get with a SAS = %s, %s, %v; want the second write and its ETag %s", got, tag, err, next)
	}
	bad := *p
	bad.SASToken = sasFor("bm90LXRoZS1rZXktb2YtdGhpcy1hY2NvdW50LTAxMjM0NTY3ODk=")
	_, err = mustSink(t, &bad).put(ctx, "sas/other.json", []byte(`{}`), "no-cache", "")
	wantReason(t, "put with a SAS signed by another key", err, reasonDenied)
}

// TestSinkAzureStatusCodes: the reason of each answer Azure gives a
// conditional Put Blob, by status and error code, from a local server
// answering as the service does: 412 ConditionNotMet and 409
// BlobAlreadyExists are preconditions, as is 404 BlobNotFound for an
// If-Match write (the blob was deleted since); a missing container, a
// lease conflict and a denial keep their own reasons.
func TestSinkAzureStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		status  int
		code    string
		ifMatch string
		want    string
	}{
		{412, "ConditionNotMet", `"0x1"`, reasonPrecondition},
		{409, "BlobAlreadyExists", "", reasonPrecondition},
		{404, "BlobNotFound", `"0x1"`, reasonPrecondition},
		{404, "ContainerNotFound", `"0x1"`, reasonMissing},
		{404, "ContainerNotFound", "", reasonMissing},
		{409, "LeaseIdMissing", "", reasonRejected},
		{403, "AuthenticationFailed", "", reasonDenied},
	} {
		var seen string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = r.Header.Get("If-Match") + "|" + r.Header.Get("If-None-Match")
			w.Header().Set("x-ms-error-code", tc.code)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(tc.status)
			w.Write([]byte(`<?xml version="1.0" encoding="utf-8"?><Error><Code>` + tc.code + `</Code><Message>m</Message></Error>`))
		}))
		sk := mustSink(t, &publisherEntry{Type: publisherAzure, AccountURL: srv.URL + "/acct", Container: "keys",
			AccountName: "acct", AccountKey: testAccountKey})
		_, err := sk.put(sinkCtx(t), "k/jwks.json", []byte(`{}`), "no-cache", tc.ifMatch)
		srv.Close()
		se := wantReason(t, fmt.Sprintf("HTTP %d %s", tc.status, tc.code), err, tc.want)
		if se.Status != tc.status {
			t.Errorf("HTTP %d %s: status %d in the error", tc.status, tc.code, se.Status)
		}
		wantCond := "|*"
		if tc.ifMatch != "" {
			wantCond = tc.ifMatch + "|"
		}
		if seen != wantCond {
			t.Errorf("HTTP %d %s: the request had If-Match|If-None-Match %q, want %q", tc.status, tc.code, seen, wantCond)
		}
	}
}
