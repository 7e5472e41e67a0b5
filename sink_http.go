package jwtrotor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// The outbound HTTP of the sinks: one client shape for S3 API calls,
// WebDAV requests and reads of a copy through its public URL. It follows
// no redirect, uses no proxy from the environment (the address check would
// then apply to the proxy, not to the store), connects to no address that
// checkOutboundHost refuses whatever the host name resolved to, sends
// plain http to loopback addresses only, and reads at most maxSinkBody
// bytes of an answer. A failure becomes a *sinkError chosen by the status
// or the kind of transport error alone.

const (
	// maxSinkBody bounds what the plugin reads of any answer: a JWKS of a
	// full ring is tens of kilobytes.
	maxSinkBody = 1 << 20
	// sinkCallTimeout bounds each request (connection, headers and body)
	// on top of the caller's context.
	sinkCallTimeout = 30 * time.Second
)

// refusedAddrError is the dialer's refusal of a resolved address.
type refusedAddrError struct{ addr string }

func (e *refusedAddrError) Error() string { return "address " + e.addr + " refused" }

// plainHTTPKey marks a request's context when its URL is plain http, so
// the dialer holds it to loopback addresses.
type plainHTTPKey struct{}

// outboundClient returns an HTTP client for the sinks, bounded by timeout
// per request.
func outboundClient(timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			d := *dialer
			plain, _ := ctx.Value(plainHTTPKey{}).(bool)
			d.Control = func(_, address string, _ syscall.RawConn) error {
				return checkDialAddr(address, plain)
			}
			return d.DialContext(ctx, network, address)
		},
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{
		Transport: schemeGuard{tr},
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			// The 3xx itself is returned, and becomes reasonRedirect.
			return http.ErrUseLastResponse
		},
	}
}

// schemeGuard refuses a URL that is neither http nor https and marks a
// plain http request for the dialer.
type schemeGuard struct{ next http.RoundTripper }

func (g schemeGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.URL.Scheme {
	case "https":
	case "http":
		req = req.WithContext(context.WithValue(req.Context(), plainHTTPKey{}, true))
	default:
		return nil, &refusedAddrError{addr: req.URL.Scheme + " URL"}
	}
	return g.next.RoundTrip(req)
}

// checkDialAddr is the dialer's check of the address a host name resolved
// to (ip:port), made before the connection is opened: what
// checkOutboundHost refuses in a URL is refused here too, and a plain http
// connection goes to a loopback address only.
func checkDialAddr(address string, plain bool) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &refusedAddrError{addr: address}
	}
	host := ap.Addr().String() // with its zone, if any, which checkOutboundHost refuses
	loopback, err := checkOutboundHost("address", host)
	if err != nil {
		return &refusedAddrError{addr: host}
	}
	if plain && !loopback {
		return &refusedAddrError{addr: host + " over plain http"}
	}
	return nil
}

// transportError maps an error without an HTTP status: the dialer's
// refusal, a deadline (the context's or the client's), or anything else
// (refused, reset, DNS, TLS), which is unreachable. Nothing of err itself
// is kept.
func transportError(op, object string, err error) *sinkError {
	reason := reasonUnreachable
	var refused *refusedAddrError
	var ne net.Error
	switch {
	case errors.As(err, &refused):
		reason = reasonRefusedAddr
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		reason = reasonTimeout
	}
	return &sinkError{Op: op, Object: object, Reason: reason}
}

// statusError maps a status that is not a success.
func statusError(op, object string, status int) *sinkError {
	reason := reasonRejected
	switch {
	case status >= 300 && status < 400:
		reason = reasonRedirect
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		reason = reasonDenied
	case status == http.StatusNotFound:
		reason = reasonMissing
	case status == http.StatusPreconditionFailed:
		reason = reasonPrecondition
	case status >= 500:
		reason = reasonServer
	case status < 400:
		// 1xx and 2xx reach here only when a caller wanted another
		// success (a 204 where a body was expected).
		reason = reasonGarbage
	}
	return &sinkError{Op: op, Object: object, Reason: reason, Status: status}
}

// readCapped reads at most maxSinkBody bytes of r; more is garbage, and a
// read that fails midway is a transport error.
func readCapped(op, object string, r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSinkBody+1))
	if err != nil {
		return nil, transportError(op, object, err)
	}
	if len(b) > maxSinkBody {
		return nil, &sinkError{Op: op, Object: object, Reason: reasonGarbage}
	}
	return b, nil
}

// drain discards what is left of a body, up to maxSinkBody, so the
// connection can be reused, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxSinkBody))
	body.Close()
}

// readPublic reads a copy the way a verifier does: an unauthenticated GET
// of its public URL. A success is a 200 with at most maxSinkBody bytes.
func readPublic(ctx context.Context, c *http.Client, url string) (body []byte, etag string, err error) {
	const op = "read_public"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, "", &sinkError{Op: op, Object: url, Reason: reasonRejected}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", transportError(op, url, err)
	}
	defer drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, "", statusError(op, url, resp.StatusCode)
	}
	body, err = readCapped(op, url, resp.Body)
	if err != nil {
		return nil, "", err
	}
	return body, resp.Header.Get("ETag"), nil
}

// newSink returns the sink behind a stored publisher. allowAmbient is the
// mount's publishers_allow_ambient_credentials: without it a publisher
// with no credentials of its own is refused here too, whatever was stored.
func newSink(p *publisherEntry, allowAmbient bool) (sink, error) {
	if p.ambient() && !allowAmbient {
		return nil, fmt.Errorf("publisher has no credentials of its own, and this mount does not allow ambient credentials")
	}
	c := outboundClient(sinkCallTimeout)
	switch p.Type {
	case publisherS3:
		return newS3Sink(p, c)
	case publisherWebDAV:
		return newWebDAVSink(p, c), nil
	case publisherAzure:
		return newAzureSink(p, c)
	case publisherGCS:
		return newGCSSink(p, c)
	}
	return nil, fmt.Errorf("publisher type %q is not supported", p.Type)
}
