package jwtrotor

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/netip"
	"net/url"
	"strings"
)

// The fields of a type=gcs publisher: a Google Cloud Storage bucket, the
// store's endpoint for an emulator or a private endpoint, and a service
// account key. How the sink authenticates is gcsAuth (sink_gcs.go).

func checkGCS(p *publisherEntry) error {
	if err := checkGCSBucket(p.Bucket); err != nil {
		return err
	}
	if p.Endpoint != "" {
		if err := checkOutboundURL("endpoint", p.Endpoint, false); err != nil {
			return err
		}
		if u, _ := url.Parse(p.Endpoint); strings.Trim(u.Path, "/") != "" {
			return refuse("endpoint", "%q has a path; give the store's base URL, such as https://storage.example.com (the JSON API is at <endpoint>/storage/v1/)", p.Endpoint)
		}
	}
	return checkCredentialsJSON(p.CredentialsJSON)
}

// checkGCSBucket holds a bucket name to Cloud Storage's naming rules, so
// it is one path segment in every URL the sink and verifiers use.
func checkGCSBucket(b string) error {
	if b == "" {
		return refuse("bucket", "required for type=gcs; give the bucket's name, such as example-issuer-keys")
	}
	ok := len(b) >= 3 && len(b) <= 222 && strings.Trim(b, "abcdefghijklmnopqrstuvwxyz0123456789._-") == "" &&
		isAlnum(b[0]) && isAlnum(b[len(b)-1])
	for _, label := range strings.Split(b, ".") {
		ok = ok && label != "" && len(label) <= 63
	}
	if !ok {
		return refuse("bucket", "%q is not a Cloud Storage bucket name; use 3 to 63 lower-case letters, digits, hyphens and underscores (up to 222 with dots between parts of at most 63), starting and ending with a letter or digit", b)
	}
	if _, err := netip.ParseAddr(b); err == nil {
		return refuse("bucket", "%q is formatted as an IP address, which Cloud Storage does not allow; choose another name", b)
	}
	if strings.HasPrefix(b, "goog") || strings.Contains(b, "google") || strings.Contains(b, "g00gle") {
		return refuse("bucket", "%q starts with goog or contains google, which Cloud Storage does not allow; choose another name", b)
	}
	return nil
}

// serviceAccountKey is what the plugin reads of a service account key.
type serviceAccountKey struct {
	Type        string `json:"type"`
	ClientEmail string `json:"client_email"`
	PrivateKey  string `json:"private_key"`
	TokenURI    string `json:"token_uri"`
}

// checkCredentialsJSON accepts "" (no key) or a service account key: a
// JSON object of type service_account with a client_email, a PEM private
// key and, when given, a token_uri the plugin may contact. Other kinds of
// credential configuration (external_account and the like can name files,
// programs and URLs to fetch) are refused. Its refusals never quote the
// value or the JSON parser's message, which may quote it.
func checkCredentialsJSON(v string) error {
	if v == "" {
		return nil
	}
	const field = "credentials_json"
	if len(v) > maxCredentialsJSON {
		return refuse(field, "%d bytes is longer than the %d-byte limit", len(v), maxCredentialsJSON)
	}
	var k serviceAccountKey
	if err := json.Unmarshal([]byte(v), &k); err != nil {
		return refuse(field, "is not a JSON object; give the service account key file's content as downloaded (the value is not repeated here)")
	}
	if k.Type != "service_account" {
		return refuse(field, "is not a service account key (its type must be service_account); other credential configurations are not accepted")
	}
	if k.ClientEmail == "" || strings.ContainsFunc(k.ClientEmail, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return refuse(field, "has no client_email, or one with characters an e-mail address cannot have")
	}
	block, _ := pem.Decode([]byte(k.PrivateKey))
	if block == nil {
		return refuse(field, "its private_key is not a PEM private key")
	}
	if _, err := x509.ParsePKCS8PrivateKey(block.Bytes); err != nil {
		if _, err := x509.ParsePKCS1PrivateKey(block.Bytes); err != nil {
			return refuse(field, "its private_key is not a PKCS #8 or PKCS #1 private key")
		}
	}
	if k.TokenURI != "" && checkOutboundURL(field, k.TokenURI, false) != nil {
		return refuse(field, "its token_uri is not a URL the plugin may contact (https, or http on a loopback address; no link-local or metadata address)")
	}
	return nil
}
