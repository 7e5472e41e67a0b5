package jwtrotor

import (
	"strings"
	"testing"
)

// Outbound safety: a URL the plugin connects to or tells verifiers to read
// is https, or http on a loopback address only; it carries no user info,
// query or fragment; and no address literal (in any spelling a resolver
// accepts) reaches a link-local range, a cloud metadata service, the
// unspecified address or multicast. Every refusal names the field.
func TestCheckOutboundURL(t *testing.T) {
	t.Parallel()
	accepted := []string{
		"https://s3.example.com/",
		"https://s3.example.com:9000/base/",
		"https://10.0.0.5/",
		"https://[2001:db8::5]:8443/",
		"http://127.0.0.1:7070/",
		"http://127.8.9.10/dav/",
		"http://[::1]:8080/dav/",
		"http://localhost:8080/",
		"http://LOCALHOST/",
		"https://xn--bcher-kva.example/",
	}
	for _, u := range accepted {
		if err := checkOutboundURL("endpoint", u, true); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
	refused := map[string]string{
		"http://s3.example.com/":               "http; use https",
		"http://10.0.0.1:9000/":                "http; use https",
		"http://[::ffff:10.0.0.1]/":            "http; use https",
		"ftp://s3.example.com/":                "not an absolute https URL",
		"s3.example.com/":                      "not an absolute https URL",
		"https:///":                            "not an absolute https URL",
		"https:s3.example.com":                 "not an absolute https URL",
		"https://user:pw@s3.example.com/":      "user info",
		"https://user@s3.example.com/":         "user info",
		"https://s3.example.com/?x=1":          "query or fragment",
		"https://s3.example.com/?":             "query or fragment",
		"https://s3.example.com/#f":            "query or fragment",
		"https://s3.example.com/#":             "query or fragment",
		"https://s3.example.com/base":          "does not end with a slash",
		"https://s3 .example.com/":             "white space",
		"https://s3.example.com/\n":            "white space",
		"https://169.254.169.254/":             "is refused",
		"http://169.254.169.254/":              "is refused",
		"https://169.254.0.1/":                 "is refused",
		"https://[fe80::1]/":                   "is refused",
		"https://[fe80::1%25eth0]/":            "zone",
		"https://[::ffff:169.254.169.254]/":    "is refused",
		"https://[64:ff9b::a9fe:a9fe]/":        "is refused",
		"https://[fd00:ec2::254]/":             "is refused",
		"https://100.100.100.200/":             "is refused",
		"https://0.0.0.0/":                     "is refused",
		"https://[::]/":                        "is refused",
		"https://224.0.0.1/":                   "is refused",
		"https://[ff02::1]/":                   "is refused",
		"https://2852039166/":                  "neither a canonical IP address",
		"https://0xa9fea9fe/":                  "neither a canonical IP address",
		"https://0251.0376.0251.0376/":         "neither a canonical IP address",
		"https://169.254.169.254./":            "neither a canonical IP address",
		"https://169.254.43518/":               "neither a canonical IP address",
		"https://s3_x!.example.com/":           "characters a host name cannot have",
		"https://" + strings.Repeat("a", 2100): "longer than",
	}
	for u, want := range refused {
		err := checkOutboundURL("endpoint", u, true)
		if err == nil || !strings.HasPrefix(err.Error(), "endpoint: ") || !strings.Contains(err.Error(), want) {
			t.Errorf("%.60q: got %v, want a refusal of endpoint saying %q", u, err, want)
		}
	}
	// An S3 endpoint need not end with a slash.
	if err := checkOutboundURL("endpoint", "https://s3.example.com", false); err != nil {
		t.Errorf("endpoint without a slash: %v", err)
	}
}

// Object names (prefix, jwks_path) are relative paths of plain segments,
// the same object in S3 and in a URL: a prefix is empty or ends with a
// slash, jwks_path names an object, and neither escapes the base.
func TestCheckObjectPath(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		v        string
		isPrefix bool
		want     string // "" accepted
	}{
		{"", true, ""},
		{"tenant-a/", true, ""},
		{"a/b.c/~d_e/", true, ""},
		{".well-known/jwks.json", false, ""},
		{"keys/jwks.json", false, ""},
		{"tenant-a", true, "does not end with a slash"},
		{"/tenant-a/", true, "starts with a slash"},
		{"a//", true, "empty, . or .."},
		{"../", true, "empty, . or .."},
		{"a/../b/", true, "empty, . or .."},
		{"./", true, "empty, . or .."},
		{"a b/", true, "characters other than"},
		{"a?b/", true, "characters other than"},
		{"a%2f/", true, "characters other than"},
		{"é/", true, "characters other than"},
		{"keys/", false, "ends with a slash"},
		{"../jwks.json", false, "empty, . or .."},
		{"/jwks.json", false, "starts with a slash"},
		{strings.Repeat("a/", 300), true, "longer than"},
	} {
		err := checkObjectPath("prefix", c.v, maxPublisherPrefix, c.isPrefix)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q refused: %v", c.v, err)
		case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), "prefix: ") || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%.40q: got %v, want a refusal saying %q", c.v, err, c.want)
		}
	}
}

// A bucket name follows S3's rules, so it is one segment or host label in
// every addressing style.
func TestCheckBucket(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"abc", "example-issuer-keys", "a.b-c.1", strings.Repeat("b", 63)} {
		if err := checkBucket(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", strings.Repeat("b", 64), "Abc", "a_b", "a/b", "-abc", "abc-", ".abc", "a..b", "192.168.1.1", "a b", "a?b"} {
		if err := checkBucket(bad); err == nil || !strings.HasPrefix(err.Error(), "bucket: ") {
			t.Errorf("%q: got %v, want a refusal of bucket", bad, err)
		}
	}
}

// A refusal of a credential never quotes it: the caller learns what is
// wrong, and the value stays out of responses and the audit log.
func TestCheckCredentialNeverQuotes(t *testing.T) {
	t.Parallel()
	const secret = "S3CR3T-never-echoed"
	for _, c := range []struct {
		v       string
		max     int
		noColon bool
	}{
		{secret + " x", 256, false},
		{secret + "\n", 256, false},
		{secret + "é", 256, false},
		{secret + strings.Repeat("x", 300), 256, false},
		{secret + ":x", 256, true},
	} {
		err := checkCredential("password", c.v, c.max, c.noColon)
		if err == nil || !strings.HasPrefix(err.Error(), "password: ") {
			t.Fatalf("%q: got %v, want a refusal of password", c.v, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the refusal quotes the credential: %v", err)
		}
	}
	if err := checkCredential("password", secret, 256, true); err != nil {
		t.Errorf("a plain credential refused: %v", err)
	}
}

// A type is s3, webdav, azure_blob or gcs, and a field of another type is
// refused, not stored unused; gcs shares bucket and endpoint with s3.
func TestCheckPublisherType(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{"", "S3", "GCS", "azure", "webDAV", "s3 "} {
		if err := checkPublisherType(typ, nil); err == nil || !strings.HasPrefix(err.Error(), "type: ") {
			t.Errorf("type %q: got %v", typ, err)
		}
	}
	gcsFields := map[string]bool{"bucket": true, "endpoint": true, "credentials_json": true}
	for f, owner := range publisherFieldTypes {
		for _, typ := range []string{publisherS3, publisherWebDAV, publisherAzure, publisherGCS} {
			err := checkPublisherType(typ, []string{"prefix", f})
			if typ == owner || typ == publisherGCS && gcsFields[f] {
				if err != nil {
					t.Errorf("%s on type=%s: %v", f, typ, err)
				}
			} else if err == nil || !strings.HasPrefix(err.Error(), f+": ") {
				t.Errorf("%s on type=%s: got %v, want a refusal of %s", f, typ, err, f)
			}
		}
	}
	for f := range gcsFields {
		if _, ok := publisherFieldTypes[f]; !ok {
			t.Errorf("%s is not a field of one type", f)
		}
	}
}

// A publisher lacking credentials of its own is ambient whatever its type,
// and one with either credential of its pair is not.
func TestPublisherAmbient(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p    publisherEntry
		want bool
	}{
		{publisherEntry{Type: publisherS3}, true},
		{publisherEntry{Type: publisherS3, SessionToken: "t"}, true},
		{publisherEntry{Type: publisherS3, AccessKeyID: "a"}, false},
		{publisherEntry{Type: publisherS3, SecretAccessKey: "s"}, false},
		{publisherEntry{Type: publisherS3, Username: "u", Password: "p"}, true},
		{publisherEntry{Type: publisherWebDAV}, true},
		{publisherEntry{Type: publisherWebDAV, Username: "u"}, false},
		{publisherEntry{Type: publisherWebDAV, Password: "p"}, false},
		{publisherEntry{Type: publisherWebDAV, AccessKeyID: "a", SecretAccessKey: "s"}, true},
		{publisherEntry{Type: publisherAzure}, true},
		{publisherEntry{Type: publisherAzure, AccountName: "acct"}, true},
		{publisherEntry{Type: publisherAzure, AccountKey: "k"}, false},
		{publisherEntry{Type: publisherAzure, SASToken: "sig=x"}, false},
		{publisherEntry{Type: publisherAzure, Username: "u", Password: "p"}, true},
		{publisherEntry{Type: publisherGCS}, true},
		{publisherEntry{Type: publisherGCS, Endpoint: "http://127.0.0.1:4443"}, true},
		{publisherEntry{Type: publisherGCS, CredentialsJSON: "{}"}, false},
		{publisherEntry{Type: publisherGCS, AccessKeyID: "a", SecretAccessKey: "s"}, true},
	} {
		if got := c.p.ambient(); got != c.want {
			t.Errorf("%+v: ambient %v, want %v", c.p, got, c.want)
		}
	}
}
