package jwtrotor

import (
	"net/netip"
	"net/url"
	"strings"
	"unicode"
)

// A publisher (publishers/<name>) is a place outside Vault where copies of
// the JWKS, and of the discovery document when its public_url is the issuer
// plus "/", are put for verifiers that cannot reach Vault: an S3
// bucket (AWS or an S3-compatible store) or a WebDAV base URL. This file
// holds what a publisher is and the checks of its fields; path_publishers.go
// its path. Nothing here reads storage, the clock or the network.

const (
	publisherS3     = "s3"
	publisherWebDAV = "webdav"
	publisherAzure  = "azure_blob"
	publisherGCS    = "gcs"

	// defaultJWKSObject is where a publisher writes the JWKS under its
	// prefix unless jwks_path says otherwise; discoveryObject is where it
	// writes the discovery document.
	defaultJWKSObject = ".well-known/jwks.json"
	discoveryObject   = ".well-known/openid-configuration"

	maxOutboundURLLen  = 2048
	maxPublisherPrefix = 512
	maxJWKSObjectLen   = 256
	maxAccessKeyIDLen  = 128
	maxSecretKeyLen    = 256
	maxUsernameLen     = 256
	maxPasswordLen     = 1024
	maxAccountKeyLen   = 256
	maxSASTokenLen     = 2048
	maxCredentialsJSON = 16 << 10
)

// publisherEntry is a stored publisher. The credentials (AccessKeyID,
// SecretAccessKey, SessionToken, Username, Password) are write-only: no
// read, log line or error carries them; a read says only whether each is
// set.
type publisherEntry struct {
	Version int    `json:"version"`
	Type    string `json:"type"`
	// S3.
	Bucket          string `json:"bucket,omitempty"`
	Region          string `json:"region,omitempty"`
	Endpoint        string `json:"endpoint,omitempty"`
	PathStyle       bool   `json:"path_style,omitempty"`
	AccessKeyID     string `json:"access_key_id,omitempty"`
	SecretAccessKey string `json:"secret_access_key,omitempty"`
	SessionToken    string `json:"session_token,omitempty"`
	// WebDAV.
	URL      string `json:"url,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// Azure Blob Storage (sink_azure.go).
	AccountURL  string `json:"account_url,omitempty"`
	Container   string `json:"container,omitempty"`
	AccountName string `json:"account_name,omitempty"`
	AccountKey  string `json:"account_key,omitempty"`
	SASToken    string `json:"sas_token,omitempty"`
	// GCS (bucket and endpoint above, shared with S3).
	CredentialsJSON string `json:"credentials_json,omitempty"`
	// Every type.
	Prefix    string `json:"prefix"`
	JWKSPath  string `json:"jwks_path"`
	Ring      string `json:"ring"`
	PublicURL string `json:"public_url"`
	Required  bool   `json:"required"`
	// Profile is the verifier the copy is for (profiles.go); "" is
	// generic, as publishers stored before profiles existed are.
	Profile string `json:"profile,omitempty"`
}

// publisherFieldTypes names the fields that belong to one type only; a
// write that gives one to a publisher of the other type is refused rather
// than stored unused.
var publisherFieldTypes = map[string]string{
	"bucket": publisherS3, "region": publisherS3, "endpoint": publisherS3, "path_style": publisherS3,
	"access_key_id": publisherS3, "secret_access_key": publisherS3, "session_token": publisherS3,
	"url": publisherWebDAV, "username": publisherWebDAV, "password": publisherWebDAV,
	"account_url": publisherAzure, "container": publisherAzure, "account_name": publisherAzure,
	"account_key": publisherAzure, "sas_token": publisherAzure,
	"credentials_json": publisherGCS,
}

// publisherFieldAlso names the fields of publisherFieldTypes that a second
// type takes too.
var publisherFieldAlso = map[string]string{"bucket": publisherGCS, "endpoint": publisherGCS}

// fieldAppliesTo reports whether field f may be given to a publisher of
// type typ, and names the types it belongs to.
func fieldAppliesTo(f, typ string) (ok bool, types string) {
	want, known := publisherFieldTypes[f]
	if !known {
		return true, ""
	}
	also := publisherFieldAlso[f]
	types = "type=" + want
	if also != "" {
		types += " and type=" + also
	}
	return want == typ || also == typ, types
}

// publisherCredentials are the write-only fields, in the order reads
// report them (each as <field>_set).
var publisherCredentials = []string{"access_key_id", "secret_access_key", "session_token", "username", "password", "account_key", "sas_token", "credentials_json"}

// credential returns the stored value of a write-only field.
func (p *publisherEntry) credential(field string) string {
	switch field {
	case "access_key_id":
		return p.AccessKeyID
	case "secret_access_key":
		return p.SecretAccessKey
	case "session_token":
		return p.SessionToken
	case "username":
		return p.Username
	case "password":
		return p.Password
	case "account_key":
		return p.AccountKey
	case "sas_token":
		return p.SASToken
	case "credentials_json":
		return p.CredentialsJSON
	}
	panic("not a publisher credential: " + field)
}

// ambient reports whether the publisher has no explicit credentials, so it
// would act with what the plugin process has: for s3 the SDK's default
// chain (environment, shared files, the instance's or pod's role); for
// webdav an unauthenticated PUT that succeeds only because of where Vault
// sits on the network; for gcs the application default credentials, or
// unauthenticated requests to a loopback endpoint (gcsAuth). All lend
// Vault's own identity to whoever configures the publisher.
func (p *publisherEntry) ambient() bool {
	switch p.Type {
	case publisherS3:
		return p.AccessKeyID == "" && p.SecretAccessKey == ""
	case publisherAzure:
		return p.AccountKey == "" && p.SASToken == ""
	case publisherGCS:
		return p.CredentialsJSON == ""
	}
	return p.Username == "" && p.Password == ""
}

// publisherTypes is what a refused type is told to use.
const publisherTypes = "s3 (AWS S3 or an S3-compatible store), webdav (HTTP PUT to a base URL), azure_blob (an Azure Blob Storage container) or gcs (Google Cloud Storage)"

// checkPublisherType refuses an unknown type, and fields of another type.
func checkPublisherType(typ string, given []string) error {
	if typ == "" {
		return refuse("type", "required; use "+publisherTypes)
	}
	if typ != publisherS3 && typ != publisherWebDAV && typ != publisherAzure && typ != publisherGCS {
		return refuse("type", "%q is not supported; use "+publisherTypes, typ)
	}
	for _, f := range given {
		if ok, want := fieldAppliesTo(f, typ); !ok {
			return refuse(f, "applies to %s publishers only, and this one is type=%s; remove it (nothing was stored)", want, typ)
		}
	}
	return nil
}

// checkPublisher validates a publisher as it would be stored: on its own,
// against the mount's rings, and against the mount's setting for ambient
// credentials. Its refusals never quote a credential.
func checkPublisher(p *publisherEntry, rings map[string]*ringEntry, allowAmbient bool) error {
	if err := checkPublisherType(p.Type, nil); err != nil {
		return err
	}
	check, first, pair := checkS3, "access_key_id", "access_key_id and secret_access_key"
	switch p.Type {
	case publisherWebDAV:
		check, first, pair = checkWebDAV, "username", "username and password"
	case publisherAzure:
		// checkAzure refuses a publisher without credentials itself:
		// azure_blob has no ambient credentials.
		check = checkAzure
	case publisherGCS:
		check, first, pair = checkGCS, "credentials_json", "credentials_json (a service account key)"
	}
	if err := check(p); err != nil {
		return err
	}
	if p.ambient() && !allowAmbient {
		return refuse(first, "no credentials given, and this mount does not let publishers use ambient credentials (the plugin process's environment and cloud identity, which are Vault's); give %s, or have a writer of config set publishers_allow_ambient_credentials=true", pair)
	}
	if err := checkObjectPath("prefix", p.Prefix, maxPublisherPrefix, true); err != nil {
		return err
	}
	if p.JWKSPath == "" {
		return refuse("jwks_path", "empty; leave it out for the default %s, or give a path such as keys/jwks.json", defaultJWKSObject)
	}
	if err := checkObjectPath("jwks_path", p.JWKSPath, maxJWKSObjectLen, false); err != nil {
		return err
	}
	if p.JWKSPath == discoveryObject {
		return refuse("jwks_path", "%s is where the discovery document is written; choose another path, such as the default %s", discoveryObject, defaultJWKSObject)
	}
	if p.Ring != "" {
		if p.Ring != strings.ToLower(p.Ring) {
			return refuse("ring", "%q has upper-case letters, and ring names are lower case (keys/<name> folds them); write ring=%s", p.Ring, strings.ToLower(p.Ring))
		}
		if r := rings[p.Ring]; r == nil || r.DeletedAt != 0 {
			return refuse("ring", "no key ring %q; create it first with vault write keys/%s, or leave ring out to publish the mount's JWKS", p.Ring, p.Ring)
		}
	}
	if p.PublicURL != "" {
		if err := checkOutboundURL("public_url", p.PublicURL, true); err != nil {
			return err
		}
	}
	return nil
}

func checkS3(p *publisherEntry) error {
	if err := checkBucket(p.Bucket); err != nil {
		return err
	}
	if p.Region == "" {
		return refuse("region", "required for type=s3; give the bucket's region, such as eu-west-1 (S3-compatible stores usually take us-east-1)")
	}
	if len(p.Region) > 64 || strings.Trim(p.Region, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return refuse("region", "%q is not a region name; use lower-case letters, digits and hyphens, such as eu-west-1", p.Region)
	}
	if p.Endpoint != "" {
		if err := checkOutboundURL("endpoint", p.Endpoint, false); err != nil {
			return err
		}
	}
	if err := checkCredential("access_key_id", p.AccessKeyID, maxAccessKeyIDLen, false); err != nil {
		return err
	}
	if err := checkCredential("secret_access_key", p.SecretAccessKey, maxSecretKeyLen, false); err != nil {
		return err
	}
	if err := checkCredential("session_token", p.SessionToken, maxStringLen, false); err != nil {
		return err
	}
	if err := checkPaired("access_key_id", p.AccessKeyID, "secret_access_key", p.SecretAccessKey); err != nil {
		return err
	}
	if p.SessionToken != "" && p.AccessKeyID == "" {
		return refuse("session_token", "a session token goes with the access_key_id and secret_access_key it was issued with; give those too, or clear session_token (\"\")")
	}
	return nil
}

func checkWebDAV(p *publisherEntry) error {
	if p.URL == "" {
		return refuse("url", "required for type=webdav; give the base URL the copies are PUT under, such as https://keys.example.com/dav/")
	}
	if err := checkOutboundURL("url", p.URL, true); err != nil {
		return err
	}
	if err := checkCredential("username", p.Username, maxUsernameLen, true); err != nil {
		return err
	}
	if err := checkCredential("password", p.Password, maxPasswordLen, false); err != nil {
		return err
	}
	if err := checkPaired("username", p.Username, "password", p.Password); err != nil {
		return err
	}
	return nil
}

// checkPaired refuses one credential of a pair without the other, naming
// the one missing.
func checkPaired(first, firstV, second, secondV string) error {
	if (firstV == "") == (secondV == "") {
		return nil
	}
	missing := second
	if firstV == "" {
		missing = first
	}
	return refuse(missing, "%s and %s go together; give both, or clear both (\"\") for a publisher without credentials of its own", first, second)
}

// checkBucket holds a bucket name to S3's naming rules, so it is one path
// segment or host label in every addressing style.
func checkBucket(b string) error {
	if b == "" {
		return refuse("bucket", "required for type=s3; give the bucket's name, such as example-issuer-keys")
	}
	ok := len(b) >= 3 && len(b) <= 63 && strings.Trim(b, "abcdefghijklmnopqrstuvwxyz0123456789.-") == "" &&
		isAlnum(b[0]) && isAlnum(b[len(b)-1]) && !strings.Contains(b, "..")
	if !ok {
		return refuse("bucket", "%q is not a bucket name; use 3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter or digit", b)
	}
	if _, err := netip.ParseAddr(b); err == nil {
		return refuse("bucket", "%q is formatted as an IP address, which S3 does not allow; choose another name", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// checkCredential bounds a write-only value. Its refusals say what is wrong
// and never quote the value.
func checkCredential(field, v string, maxLen int, noColon bool) error {
	if len(v) > maxLen {
		return refuse(field, "%d bytes is longer than the %d-byte limit", len(v), maxLen)
	}
	for _, r := range v {
		if r < 0x21 || r > 0x7e {
			return refuse(field, "has a character that is not printable ASCII (a space, a control character or a non-ASCII letter); give the value exactly as issued (the value is not repeated here)")
		}
	}
	if noColon && strings.Contains(v, ":") {
		return refuse(field, "has a colon, which HTTP Basic authentication cannot carry in a user name")
	}
	return nil
}

// checkObjectPath checks prefix and jwks_path: relative paths of plain
// segments, which name the same object in S3 and in a URL.
func checkObjectPath(field, v string, maxLen int, isPrefix bool) error {
	if v == "" {
		return nil
	}
	if len(v) > maxLen {
		return refuse(field, "%d bytes is longer than the %d-byte limit", len(v), maxLen)
	}
	if strings.Trim(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~/") != "" {
		return refuse(field, "%q has characters other than letters, digits and - _ . ~ /; object names are used unescaped in URLs, so keep to those", v)
	}
	if strings.HasPrefix(v, "/") {
		return refuse(field, "%q starts with a slash; give it relative to the bucket or base URL, such as %s", v, strings.TrimLeft(v, "/"))
	}
	trimmed := v
	if isPrefix {
		if !strings.HasSuffix(v, "/") {
			return refuse(field, "%q does not end with a slash; objects are named <prefix><jwks_path>, so write %s/", v, v)
		}
		trimmed = strings.TrimSuffix(v, "/")
	} else if strings.HasSuffix(v, "/") {
		return refuse(field, "%q ends with a slash, and it names an object; remove the slash", v)
	}
	for _, seg := range strings.Split(trimmed, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return refuse(field, "%q has an empty, . or .. segment; give a plain path", v)
		}
	}
	return nil
}

// metadataAddrs are cloud instance-metadata services outside the
// link-local ranges.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),   // AWS, over IPv6
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
}

// nat64 is the well-known NAT64 prefix, through which an IPv6 address
// reaches the IPv4 address in its last four bytes.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// checkOutboundURL checks a URL the plugin will connect to (endpoint, url)
// or tell verifiers to read (public_url): https, or http on a loopback
// address only; no user info (credentials have fields of their own and
// reads return these URLs), query or fragment; and no address a request
// must never reach: link-local ranges (where cloud metadata services
// answer), metadata addresses outside them, the unspecified address and
// multicast. An address is checked here when the URL gives one; a host
// name is resolved only at connection time, so the addresses it resolves
// to are checked there, by the dialer of the sinks (sink_http.go).
func checkOutboundURL(field, raw string, wantSlash bool) error {
	if len(raw) > maxOutboundURLLen {
		return refuse(field, "%d bytes is longer than the %d-byte limit", len(raw), maxOutboundURLLen)
	}
	if strings.IndexFunc(raw, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return refuse(field, "%q contains white space or control characters; give a plain URL", raw)
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return refuse(field, "%q is not an absolute https URL; give one such as https://keys.example.com/", raw)
	}
	if u.User != nil {
		return refuse(field, "has user info (user:password@), which reads would show; remove it and give the credentials in their own write-only fields")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#") {
		return refuse(field, "%q has a query or fragment; remove it (objects are named by the path alone)", raw)
	}
	if wantSlash && !strings.HasSuffix(u.Path, "/") {
		return refuse(field, "%q does not end with a slash; it is the base the object names are appended to, so write %s/", raw, raw)
	}
	host := u.Hostname()
	loopback, err := checkOutboundHost(field, host)
	if err != nil {
		return err
	}
	if u.Scheme == "http" && !loopback {
		return refuse(field, "%q is http; use https (http is accepted only for a loopback address, 127.0.0.1, ::1 or localhost, where no one else can read or change the traffic)", raw)
	}
	return nil
}

// checkOutboundHost checks the host of an outbound URL and reports whether
// it is a loopback address.
func checkOutboundHost(field, host string) (loopback bool, err error) {
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	if strings.Contains(host, "%") {
		return false, refuse(field, "the address %q has a zone; give an address without one, or a host name", host)
	}
	addr, perr := netip.ParseAddr(host)
	if perr != nil {
		// A host name. Resolvers read some names that are not canonical
		// addresses (2852039166, 0xa9fea9fe, 0251.0376.0251.0376,
		// 169.254.169.254.) as addresses: refuse a name whose last label
		// is a number.
		labels := strings.Split(strings.TrimSuffix(host, "."), ".")
		last := strings.ToLower(labels[len(labels)-1])
		if last == "" || strings.Trim(last, "0123456789") == "" || strings.HasPrefix(last, "0x") {
			return false, refuse(field, "the host %q is neither a canonical IP address nor a host name; write the address in dotted decimal (IPv4) or in brackets (IPv6), or give a host name", host)
		}
		if strings.Trim(strings.ToLower(host), "abcdefghijklmnopqrstuvwxyz0123456789-._") != "" {
			return false, refuse(field, "the host %q has characters a host name cannot have; give an internationalised name in its xn-- form", host)
		}
		return false, nil
	}
	addr = addr.Unmap()
	if addr.Is6() && nat64.Contains(addr) {
		b := addr.As16()
		addr = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	refused := addr.IsLinkLocalUnicast() || addr.IsLinkLocalMulticast() || addr.IsInterfaceLocalMulticast() ||
		addr.IsMulticast() || addr.IsUnspecified()
	for _, m := range metadataAddrs {
		refused = refused || addr == m
	}
	if refused {
		return false, refuse(field, "the address %s is refused: link-local, multicast and unspecified addresses, and cloud metadata services, are never contacted; give the store's own address or host name", host)
	}
	return addr.IsLoopback(), nil
}
