package jwtrotor

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// Credentials of the publishers these tests write: distinctive, so a scan
// for them finds any copy.
const (
	testAccessKeyID  = "AKTESTPUBLISHER0001"
	testSecretKey    = "pub-secret-key-3f9a7c1e"
	testSessionToken = "pub-session-token-5b2d8e"
	testDAVUser      = "dav-user-7c4e"
	testDAVPassword  = "dav-password-9e1f"
)

var testCredentials = []string{testAccessKeyID, testSecretKey, testSessionToken, testDAVUser, testDAVPassword}

func s3Publisher(extra map[string]any) map[string]any {
	d := map[string]any{
		"type": "s3", "bucket": "issuer-keys", "region": "eu-west-1",
		"access_key_id": testAccessKeyID, "secret_access_key": testSecretKey,
	}
	maps.Copy(d, extra)
	return d
}

func davPublisher(extra map[string]any) map[string]any {
	d := map[string]any{"type": "webdav", "url": "https://keys.example.com/dav/", "username": testDAVUser, "password": testDAVPassword}
	maps.Copy(d, extra)
	return d
}

// A publisher reads back as written, with the defaults of the fields left
// out, without its credentials (each reported as set or not), and without
// the other type's fields; it is listed until deleted.
func TestPublisherReadsBackWithoutCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	e.mustWrite("publishers/aws", s3Publisher(map[string]any{
		"session_token": testSessionToken, "endpoint": "https://s3.eu-west-1.example.com", "path_style": true,
		"prefix": "tenant-a/", "ring": "k", "public_url": "https://keys.example.com/tenant-a/", "required": true, "profile": "aws",
	}))
	e.mustWrite("publishers/dav", davPublisher(nil))
	got := e.read("publishers/aws").Data
	want := map[string]any{
		"type": "s3", "bucket": "issuer-keys", "region": "eu-west-1", "endpoint": "https://s3.eu-west-1.example.com", "path_style": true,
		"access_key_id_set": true, "secret_access_key_set": true, "session_token_set": true, "ambient_credentials": false,
		"prefix": "tenant-a/", "jwks_path": ".well-known/jwks.json", "ring": "k", "public_url": "https://keys.example.com/tenant-a/", "required": true, "profile": "aws",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("publishers/aws reads\n%v\nwant\n%v", got, want)
	}
	got = e.read("publishers/dav").Data
	want = map[string]any{
		"type": "webdav", "url": "https://keys.example.com/dav/", "username_set": true, "password_set": true, "ambient_credentials": false,
		"prefix": "", "jwks_path": ".well-known/jwks.json", "ring": "", "public_url": "", "required": false, "profile": "generic",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("publishers/dav reads\n%v\nwant\n%v", got, want)
	}
	list := func() string {
		resp, err := e.do(logical.ListOperation, "publishers/", nil)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(resp.Data["keys"])
	}
	if l := list(); l != "[aws dav]" {
		t.Fatalf("list %s", l)
	}
	// A partial update changes what it names and keeps the rest.
	e.mustWrite("publishers/aws", map[string]any{"required": false, "jwks_path": "keys/jwks.json"})
	got = e.read("publishers/aws").Data
	if got["required"] != false || got["jwks_path"] != "keys/jwks.json" || got["bucket"] != "issuer-keys" || got["secret_access_key_set"] != true || got["ring"] != "k" {
		t.Fatalf("after a partial update: %v", got)
	}
	if _, err := e.do(logical.DeleteOperation, "publishers/aws", nil); err != nil {
		t.Fatal(err)
	}
	if r := e.read("publishers/aws"); r != nil {
		t.Fatalf("deleted publisher reads %v", r.Data)
	}
	if l := list(); l != "[dav]" {
		t.Fatalf("list after delete %s", l)
	}
	if _, ok := dump(t, e.storage)[publisherPrefix+"aws"]; ok {
		t.Fatal("the deleted publisher is still stored")
	}
}

// Credentials are write-only: no response (read, list, config, a refusal)
// and no log line carries one, though they are stored; an update that gives
// one replaces it and the old value is gone from storage; "" clears it.
func TestPublisherCredentialsNeverLeave(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("publishers/aws", s3Publisher(map[string]any{"session_token": testSessionToken}))
	e.mustWrite("publishers/dav", davPublisher(nil))
	var seen []string
	record := func(resp *logical.Response, err error) {
		b, _ := json.Marshal(resp)
		seen = append(seen, string(b), fmt.Sprint(err))
	}
	for _, p := range []string{"publishers/aws", "publishers/dav", "config"} {
		record(e.do(logical.ReadOperation, p, nil))
	}
	record(e.do(logical.ListOperation, "publishers/", nil))
	// Refusals of writes that carry credentials, each for another field.
	for _, data := range []map[string]any{
		{"secret_access_key": testSecretKey + " ", "access_key_id": testAccessKeyID},
		{"secret_access_key": testSecretKey + strings.Repeat("x", 300)},
		{"access_key_id": testAccessKeyID + "\n"},
		{"session_token": testSessionToken, "access_key_id": "", "secret_access_key": ""},
		{"access_key_id": testAccessKeyID, "secret_access_key": ""},
		{"endpoint": "https://" + testAccessKeyID + ":" + testSecretKey + "@s3.example.com"},
		{"password": testDAVPassword},
	} {
		resp, err := e.write("publishers/aws", data)
		expect400(t, resp, err)
		record(resp, err)
	}
	for _, data := range []map[string]any{
		{"username": testDAVUser + ":x"},
		{"password": testDAVPassword + "\t"},
		{"url": "https://" + testDAVUser + ":" + testDAVPassword + "@keys.example.com/dav/"},
	} {
		resp, err := e.write("publishers/dav", data)
		expect400(t, resp, err)
		record(resp, err)
	}
	scanForCredentials(t, e, seen, testCredentials, `"secret_access_key_set":true`, "dav")

	// An update replaces a credential: the old value is gone from storage.
	e.mustWrite("publishers/aws", map[string]any{"secret_access_key": "pub-secret-key-rotated", "session_token": ""})
	e.mustWrite("publishers/dav", map[string]any{"password": "dav-password-rotated"})
	stored := strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n")
	for _, old := range []string{testSecretKey, testSessionToken, testDAVPassword} {
		if strings.Contains(stored, old) {
			t.Errorf("the replaced credential %q is still stored", old)
		}
	}
	if !strings.Contains(stored, "pub-secret-key-rotated") || !strings.Contains(stored, testAccessKeyID) {
		t.Fatal("the update did not store the new secret key, or lost the access key id")
	}
	got := e.read("publishers/aws").Data
	if got["secret_access_key_set"] != true || got["session_token_set"] != false || got["access_key_id_set"] != true {
		t.Fatalf("after the update: %v", got)
	}
	// Cleared where ambient credentials are allowed.
	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true})
	e.mustWrite("publishers/aws", map[string]any{"access_key_id": "", "secret_access_key": ""})
	if got := e.read("publishers/aws").Data; got["access_key_id_set"] != false || got["secret_access_key_set"] != false || got["ambient_credentials"] != true {
		t.Fatalf("after clearing: %v", got)
	}
	if strings.Contains(strings.Join(slices.Collect(maps.Values(dump(t, e.storage))), "\n"), testAccessKeyID) {
		t.Fatal("the cleared access key id is still stored")
	}
}

// A publisher without credentials of its own would act as the plugin
// process, that is as Vault: it is refused unless a writer of config
// allowed it, and the setting cannot be withdrawn while one relies on it.
// A publisher write cannot set it.
func TestPublisherAmbientCredentialsNeedConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if got := e.read("config").Data["publishers_allow_ambient_credentials"]; got != false {
		t.Fatalf("publishers_allow_ambient_credentials defaults to %v", got)
	}
	resp, err := e.write("publishers/aws", map[string]any{"type": "s3", "bucket": "issuer-keys", "region": "us-east-1"})
	expect400(t, resp, err, "access_key_id:", "publishers_allow_ambient_credentials=true")
	resp, err = e.write("publishers/dav", map[string]any{"type": "webdav", "url": "http://127.0.0.1:8080/"})
	expect400(t, resp, err, "username:", "publishers_allow_ambient_credentials=true")
	resp, err = e.write("publishers/aws", map[string]any{"type": "s3", "bucket": "issuer-keys", "region": "us-east-1", "publishers_allow_ambient_credentials": true})
	expect400(t, resp, err, "publishers_allow_ambient_credentials:", "unknown field")
	if len(dump(t, e.storage)) != 0 {
		t.Fatalf("a refused write stored %v", slices.Collect(maps.Keys(dump(t, e.storage))))
	}

	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": true})
	e.mustWrite("publishers/aws", map[string]any{"type": "s3", "bucket": "issuer-keys", "region": "us-east-1"})
	e.mustWrite("publishers/dav", map[string]any{"type": "webdav", "url": "http://127.0.0.1:8080/"})
	if e.read("publishers/aws").Data["ambient_credentials"] != true {
		t.Fatal("a publisher without credentials does not read as ambient")
	}
	resp, err = e.write("config", map[string]any{"publishers_allow_ambient_credentials": false})
	expect400(t, resp, err, "publishers_allow_ambient_credentials:", "aws, dav")
	e.mustWrite("publishers/aws", map[string]any{"access_key_id": testAccessKeyID, "secret_access_key": testSecretKey})
	e.mustWrite("publishers/dav", map[string]any{"username": testDAVUser, "password": testDAVPassword})
	e.mustWrite("config", map[string]any{"publishers_allow_ambient_credentials": false})
	if got := e.restart().read("config").Data["publishers_allow_ambient_credentials"]; got != false {
		t.Fatalf("after a restart publishers_allow_ambient_credentials = %v", got)
	}
	// And a publisher cannot drop its credentials while it is refused.
	resp, err = e.write("publishers/aws", map[string]any{"access_key_id": "", "secret_access_key": ""})
	expect400(t, resp, err, "access_key_id:", "ambient")
}

// A publisher's type is fixed at creation: its fields and credentials mean
// nothing to the other type.
func TestPublisherTypeCannotChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("publishers/aws", s3Publisher(nil))
	before := dump(t, e.storage)
	resp, err := e.write("publishers/aws", davPublisher(map[string]any{"bucket": ""}))
	expect400(t, resp, err, "type:", "delete it and create it again")
	resp, err = e.write("publishers/aws", map[string]any{"url": "https://keys.example.com/"})
	expect400(t, resp, err, "url:", "type=webdav publishers only")
	sameStorage(t, before, dump(t, e.storage))
	e.mustWrite("publishers/aws", map[string]any{"type": "s3", "region": "us-east-2"})
	if got := e.read("publishers/aws").Data["region"]; got != "us-east-2" {
		t.Fatalf("region %v", got)
	}
}

// A ring a publisher publishes cannot be deleted from under it, as a ring a
// role signs with cannot; a publisher names a live ring, in lower case.
func TestPublisherRingMustExist(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	resp, err := e.write("publishers/aws", s3Publisher(map[string]any{"ring": "nope"}))
	expect400(t, resp, err, "ring:", `"nope"`)
	resp, err = e.write("publishers/aws", s3Publisher(map[string]any{"ring": "K"}))
	expect400(t, resp, err, "ring:", "ring=k")
	e.mustWrite("publishers/aws", s3Publisher(map[string]any{"ring": "k"}))
	resp, err = e.do(logical.DeleteOperation, "keys/k", nil)
	expect400(t, resp, err, "name:", "publisher(s) aws")
	if e.ring("k").DeletedAt != 0 {
		t.Fatal("the ring was deleted")
	}
	e.mustWrite("publishers/aws", map[string]any{"ring": ""})
	if _, err := e.do(logical.DeleteOperation, "keys/k", nil); err != nil {
		t.Fatal(err)
	}
	resp, err = e.write("publishers/aws", map[string]any{"ring": "k"})
	expect400(t, resp, err, "ring:", `"k"`)
}

// A mount holds at most maxPublishers publishers; one more is refused,
// and updates of the existing ones still pass.
func TestPublishersBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for i := range maxPublishers {
		e.mustWrite(fmt.Sprintf("publishers/p%d", i), davPublisher(nil))
	}
	resp, err := e.write("publishers/one-more", davPublisher(nil))
	expect400(t, resp, err, "name:", fmt.Sprintf("%d publishers, the limit", maxPublishers))
	e.mustWrite("publishers/p0", map[string]any{"required": true})
	if e.read("publishers/one-more") != nil {
		t.Fatal("the refused publisher was stored")
	}
}

// A standby learns of another node's publisher writes through their
// invalidation, and a restart reads them from storage.
func TestPublisherInvalidate(t *testing.T) {
	t.Parallel()
	active, standby := twoNodes(t)
	if standby.read("publishers/aws") != nil {
		t.Fatal("a publisher before any was written")
	}
	active.mustWrite("publishers/aws", s3Publisher(nil))
	if standby.read("publishers/aws") != nil {
		t.Fatal("the standby saw the write without an invalidation (the test would prove nothing)")
	}
	standby.b.invalidate(t.Context(), publisherPrefix+"aws")
	if r := standby.read("publishers/aws"); r == nil || r.Data["bucket"] != "issuer-keys" {
		t.Fatalf("after invalidation the standby reads %v", r)
	}
	if _, err := active.do(logical.DeleteOperation, "publishers/aws", nil); err != nil {
		t.Fatal(err)
	}
	standby.b.invalidate(t.Context(), publisherPrefix+"aws")
	if r := standby.read("publishers/aws"); r != nil {
		t.Fatalf("after the delete's invalidation the standby reads %v", r.Data)
	}
	active.mustWrite("publishers/dav", davPublisher(nil))
	if r := active.restart().read("publishers/dav"); r == nil || r.Data["url"] != "https://keys.example.com/dav/" {
		t.Fatalf("after a restart: %v", r)
	}
}
