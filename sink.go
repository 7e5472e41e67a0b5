package jwtrotor

import (
	"context"
	"errors"
	"fmt"
)

// A sink is the store behind one publisher: an S3 bucket (sink_s3.go) or a
// WebDAV base URL (sink_webdav.go). The upload code (publish.go) sees only
// this interface, so the model test can stand an in-memory store in for a
// real one; the acceptance tests run the real ones.
//
// Every call is bounded by its context, follows no redirect, connects to no
// address that checkOutboundHost refuses (whatever a host name resolves
// to), and reports failure as a *sinkError: never the store's response
// body, never a credential.
type sink interface {
	// put writes body as the object name (relative to the publisher's
	// bucket or base URL, prefix included) with Content-Type
	// application/json and the given Cache-Control. It is conditional:
	// ifMatch "" means the object must not exist yet (If-None-Match: *);
	// otherwise the object's current ETag must be ifMatch (If-Match). A
	// failed condition is a *sinkError with reason reasonPrecondition. It
	// returns the new object's ETag.
	put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (etag string, err error)
	// get reads the object name through the store's own API, with the
	// publisher's credentials. A missing object is a *sinkError with
	// reason reasonMissing.
	get(ctx context.Context, name string) (body []byte, etag string, err error)
}

// Reasons a sink call failed: the label of the failure metric and what the
// verifier report shows. A reason is chosen by the status or the transport
// error alone, except profile, which is chosen before any call.
const (
	reasonUnreachable  = "unreachable"     // no connection (refused, reset, DNS)
	reasonTimeout      = "timeout"         // the call ran past its deadline
	reasonRefusedAddr  = "refused_address" // the host resolved to an address never contacted
	reasonDenied       = "denied"          // 401 or 403
	reasonMissing      = "missing"         // 404 on a read
	reasonPrecondition = "precondition"    // 412: the object is not the one expected
	reasonRedirect     = "redirect"        // a 3xx, not followed
	reasonRejected     = "rejected"        // another 4xx
	reasonServer       = "server"          // 5xx
	reasonGarbage      = "garbage"         // an answer the plugin cannot use (no ETag, a body that is not the copy)
	reasonStale        = "stale_read"      // the copy read back is not the one written (a cache in front of public_url, or another writer)
	reasonProfile      = "profile"         // the copy holds what the publisher's profile cannot carry; nothing was uploaded
)

// sinkError is a failed sink call as the plugin reports it: the operation,
// the object, the reason and the HTTP status (0 when there was none). It
// never holds the store's response body or a credential, so it may go into
// a log line, the report and storage.
type sinkError struct {
	Op     string // "put", "get" or "read_public"
	Object string
	Reason string
	Status int
}

func (e *sinkError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s %s: %s (HTTP %d)", e.Op, e.Object, e.Reason, e.Status)
	}
	return fmt.Sprintf("%s %s: %s", e.Op, e.Object, e.Reason)
}

// sinkReason is the reason of a sink failure; reasonUnreachable for an
// error that is not a *sinkError.
func sinkReason(err error) string {
	var se *sinkError
	if errors.As(err, &se) {
		return se.Reason
	}
	return reasonUnreachable
}
