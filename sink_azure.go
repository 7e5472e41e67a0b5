package jwtrotor

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
)

// azureSink is a publisher's Azure Blob Storage container, through the
// Azure SDK's azblob clients, authenticated with a shared key
// (account_name and account_key) or a SAS token. Ambient credentials are
// not supported for this type (publishers_azure.go says why). Each call
// builds a blob client of its own (cheap: no request is made); the
// container client is not used, because its package brings in an Arrow
// and Parquet implementation the plugin has no use for.
type azureSink struct {
	container string // the container's URL, without a trailing slash
	sas       string // the SAS token's query, without "?"; "" with a shared key
	cred      *blob.SharedKeyCredential
	opts      azcore.ClientOptions
}

// newAzureSink prepares the clients of a publisher. Every request goes
// through the outbound client c; the SDK retries once at most (the upload
// code retries on its own schedule), and every attempt is bounded by the
// caller's context.
func newAzureSink(p *publisherEntry, c *http.Client) (*azureSink, error) {
	if p.ambient() {
		return nil, errors.New("an azure_blob publisher needs a shared key or a SAS token; ambient credentials are not supported for it")
	}
	s := &azureSink{
		container: strings.TrimSuffix(p.AccountURL, "/") + "/" + p.Container,
		sas:       strings.TrimPrefix(p.SASToken, "?"),
		opts: azcore.ClientOptions{
			Transport: c,
			Retry: policy.RetryOptions{
				MaxRetries:    1,
				TryTimeout:    sinkCallTimeout,
				RetryDelay:    500 * time.Millisecond,
				MaxRetryDelay: time.Second,
			},
			// The SDK's own log stays off, and its telemetry is a
			// User-Agent header only.
			Telemetry: policy.TelemetryOptions{ApplicationID: "vault-plugin-jwt-rotor"},
		},
	}
	if p.AccountKey != "" {
		cred, err := blob.NewSharedKeyCredential(p.AccountName, p.AccountKey)
		if err != nil {
			// The SDK's error may quote the key; only its kind is kept.
			return nil, errors.New("the publisher's account_key is not a storage account key")
		}
		s.cred = cred
	}
	return s, nil
}

// blobURL is the URL of an object: names are plain path segments
// (checkObjectPath), so they need no escaping, and the URL is the one
// verifiers read under public_url.
func (s *azureSink) blobURL(name string) string {
	u := s.container + "/" + name
	if s.sas != "" {
		u += "?" + s.sas
	}
	return u
}

func (s *azureSink) blockBlob(op, name string) (*blockblob.Client, error) {
	var (
		c   *blockblob.Client
		err error
	)
	opts := &blockblob.ClientOptions{ClientOptions: s.opts}
	if s.cred != nil {
		c, err = blockblob.NewClientWithSharedKeyCredential(s.blobURL(name), s.cred, opts)
	} else {
		c, err = blockblob.NewClientWithNoCredential(s.blobURL(name), opts)
	}
	if err != nil {
		return nil, &sinkError{Op: op, Object: name, Reason: reasonRejected}
	}
	return c, nil
}

// put is a conditional Put Blob of a block blob with the blob's
// Content-Type and Cache-Control set. Azure answers If-None-Match: * on an
// existing blob with 409 BlobAlreadyExists, and If-Match on another ETag
// with 412 ConditionNotMet: both mean the object is not the one expected.
func (s *azureSink) put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (string, error) {
	cond := &blob.ModifiedAccessConditions{}
	if ifMatch == "" {
		star := azcore.ETagAny
		cond.IfNoneMatch = &star
	} else {
		tag := azcore.ETag(ifMatch)
		cond.IfMatch = &tag
	}
	contentType := "application/json"
	c, err := s.blockBlob("put", name)
	if err != nil {
		return "", err
	}
	out, err := c.Upload(ctx, streaming.NopCloser(bytes.NewReader(body)), &blockblob.UploadOptions{
		HTTPHeaders:      &blob.HTTPHeaders{BlobContentType: &contentType, BlobCacheControl: &cacheControl},
		AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: cond},
	})
	if err != nil {
		se := azureError("put", name, err)
		switch {
		case bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet):
			se.Reason = reasonPrecondition
		case ifMatch != "" && bloberror.HasCode(err, bloberror.BlobNotFound):
			// If-Match on a blob deleted since: not the one expected
			// either. A missing container stays missing.
			se.Reason = reasonPrecondition
		}
		return "", se
	}
	if out.ETag == nil || *out.ETag == "" {
		return "", &sinkError{Op: "put", Object: name, Reason: reasonGarbage}
	}
	return string(*out.ETag), nil
}

func (s *azureSink) get(ctx context.Context, name string) ([]byte, string, error) {
	c, err := s.blockBlob("get", name)
	if err != nil {
		return nil, "", err
	}
	out, err := c.DownloadStream(ctx, nil)
	if err != nil {
		return nil, "", azureError("get", name, err)
	}
	defer drain(out.Body)
	body, err := readCapped("get", name, out.Body)
	if err != nil {
		return nil, "", err
	}
	etag := ""
	if out.ETag != nil {
		etag = string(*out.ETag)
	}
	return body, etag, nil
}

// azureError maps an SDK error by the HTTP status of the service's answer,
// or as a transport error when there was none. The SDK's message, which
// quotes the request URL (with a SAS token's signature) and the service's
// error document, is dropped.
func azureError(op, name string, err error) *sinkError {
	var re *azcore.ResponseError
	if errors.As(err, &re) && re.StatusCode != 0 {
		return statusError(op, name, re.StatusCode)
	}
	return transportError(op, name, err)
}

// NonRetriable marks a refused address as final for the Azure SDK's retry
// policy, which retries no error that has this method: the same address
// would be refused again.
func (e *refusedAddrError) NonRetriable() {}
