package jwtrotor

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/storage"
	"github.com/googleapis/gax-go/v2"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// gcsSink is a publisher's Cloud Storage bucket, through the JSON API of
// the cloud.google.com/go/storage client: Google Cloud Storage, or the
// store at endpoint (a private endpoint or an emulator).
//
// Cloud Storage versions an object by its generation, not by an ETag the
// writer can match: the ETag this sink returns is the object's generation
// in decimal, and a conditional put is ifGenerationMatch on it (or
// ifGenerationMatch=0, "does not exist yet", for ifMatch "").
type gcsSink struct {
	bucket *storage.BucketHandle
}

// defaultGCSEndpoint is Cloud Storage's own, used when endpoint is empty
// (named here so that no environment variable of the SDK redirects it).
const defaultGCSEndpoint = "https://storage.googleapis.com"

// How a gcs publisher authenticates (gcsAuth).
const (
	gcsAuthKey     = "service_account_key" // credentials_json: OAuth 2.0 tokens of that service account
	gcsAuthDefault = "application_default" // no credentials_json: the process's application default credentials
	gcsAuthNone    = "none"                // no credentials_json and a loopback endpoint: no Authorization at all
)

// gcsAuth decides how a publisher authenticates. With credentials_json,
// with that key. Without it, a publisher is ambient (publishers.go), so
// the mount must allow ambient credentials; then an endpoint on a loopback
// address (127.0.0.0/8, ::1, localhost: an emulator on Vault's own host)
// gets unauthenticated requests, and never the process's Google
// credentials, which a local program has no use for and should not see;
// any other endpoint, or none, gets the application default credentials.
// A host name other than localhost is never taken for loopback, whatever
// it resolves to.
func gcsAuth(p *publisherEntry) string {
	if p.CredentialsJSON != "" {
		return gcsAuthKey
	}
	if p.Endpoint != "" {
		if u, err := url.Parse(p.Endpoint); err == nil {
			if loopback, err := checkOutboundHost("endpoint", u.Hostname()); err == nil && loopback {
				return gcsAuthNone
			}
		}
	}
	return gcsAuthDefault
}

// newGCSSink builds the storage client of a publisher. Its API calls go
// through the outbound client c, wrapped with the token source of the
// publisher's credentials. With a service account key the token endpoint
// (the key's token_uri) is contacted through c too, under the same rules,
// each token request bounded by c's timeout. With application default
// credentials the token source keeps the SDK's own HTTP client, because
// it may need the metadata server's link-local address, which c refuses
// by design.
func newGCSSink(p *publisherEntry, c *http.Client) (*gcsSink, error) {
	hc := *c
	switch gcsAuth(p) {
	case gcsAuthKey:
		cfg, err := google.JWTConfigFromJSON([]byte(p.CredentialsJSON), storage.ScopeReadWrite)
		if err != nil {
			// The parser's error may quote the key.
			return nil, errors.New("credentials_json is not a usable service account key")
		}
		ts := cfg.TokenSource(context.WithValue(context.Background(), oauth2.HTTPClient, c))
		hc.Transport = &oauth2.Transport{Source: ts, Base: c.Transport}
	case gcsAuthDefault:
		creds, err := google.FindDefaultCredentials(context.Background(), storage.ScopeReadWrite)
		if err != nil {
			// The error may quote the environment's files.
			return nil, errors.New("no application default credentials were found for Cloud Storage")
		}
		hc.Transport = &oauth2.Transport{Source: creds.TokenSource, Base: c.Transport}
	}
	base := defaultGCSEndpoint
	if p.Endpoint != "" {
		base = strings.TrimSuffix(p.Endpoint, "/")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, err := storage.NewClient(ctx,
		// The client given carries the authentication: the SDK adds none
		// and looks for no credentials of its own.
		option.WithHTTPClient(&hc), option.WithoutAuthentication(),
		option.WithEndpoint(base+"/storage/v1/"),
		storage.WithJSONReads(), storage.WithDisabledClientMetrics())
	if err != nil {
		return nil, errors.New("the Cloud Storage client could not be built")
	}
	// The upload code retries on its own schedule: one retry here, for a
	// dropped connection, and every attempt within the caller's context.
	client.SetRetry(storage.WithMaxAttempts(2), storage.WithBackoff(gax.Backoff{Initial: 100 * time.Millisecond, Max: time.Second}))
	return &gcsSink{bucket: client.Bucket(p.Bucket)}, nil
}

// put is a single-request upload (no resumable session) with
// ifGenerationMatch: 0 when ifMatch is "", else the generation ifMatch
// holds. Cloud Storage answers 412 when the condition fails.
func (s *gcsSink) put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (string, error) {
	cond := storage.Conditions{DoesNotExist: true}
	if ifMatch != "" {
		gen, err := strconv.ParseInt(ifMatch, 10, 64)
		if err != nil || gen <= 0 {
			// Not a generation this sink returned: the object is not
			// the one expected, and the upload code reads the current one.
			return "", &sinkError{Op: "put", Object: name, Reason: reasonPrecondition}
		}
		cond = storage.Conditions{GenerationMatch: gen}
	}
	// Cancelling the writer's context is what aborts an upload under way.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := s.bucket.Object(name).If(cond).NewWriter(ctx)
	w.ContentType = "application/json"
	w.CacheControl = cacheControl
	w.ChunkSize = 0
	if _, err := w.Write(body); err != nil {
		cancel()
		_ = w.Close()
		return "", gcsError("put", name, err)
	}
	if err := w.Close(); err != nil {
		return "", gcsError("put", name, err)
	}
	a := w.Attrs()
	if a == nil || a.Generation <= 0 {
		return "", &sinkError{Op: "put", Object: name, Reason: reasonGarbage}
	}
	return strconv.FormatInt(a.Generation, 10), nil
}

// get reads the object and its generation (as the ETag put returns).
func (s *gcsSink) get(ctx context.Context, name string) ([]byte, string, error) {
	r, err := s.bucket.Object(name).NewReader(ctx)
	if err != nil {
		return nil, "", gcsError("get", name, err)
	}
	defer r.Close()
	body, err := readCapped("get", name, r)
	if err != nil {
		return nil, "", err
	}
	if r.Attrs.Generation <= 0 {
		return nil, "", &sinkError{Op: "get", Object: name, Reason: reasonGarbage}
	}
	return body, strconv.FormatInt(r.Attrs.Generation, 10), nil
}

// gcsError maps an SDK error by the HTTP status it carries (the API's, or
// the token endpoint's), or as a transport error when it carries none. The
// SDK's message, which quotes the store's error document, is dropped.
func gcsError(op, name string, err error) *sinkError {
	if errors.Is(err, storage.ErrObjectNotExist) || errors.Is(err, storage.ErrBucketNotExist) {
		return statusError(op, name, http.StatusNotFound)
	}
	var api *googleapi.Error
	if errors.As(err, &api) && api.Code != 0 {
		return statusError(op, name, api.Code)
	}
	// The token endpoint refused the key (400 invalid_grant, 401): the
	// publisher's credentials are denied. Its 5xx is the server's.
	var tok *oauth2.RetrieveError
	if errors.As(err, &tok) && tok.Response != nil {
		if tok.Response.StatusCode >= 500 {
			return &sinkError{Op: op, Object: name, Reason: reasonServer, Status: tok.Response.StatusCode}
		}
		return &sinkError{Op: op, Object: name, Reason: reasonDenied, Status: tok.Response.StatusCode}
	}
	return transportError(op, name, err)
}
