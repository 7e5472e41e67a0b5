package jwtrotor

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// Replaced by sink_http.go, sink_s3.go and sink_webdav.go.

func newSink(p *publisherEntry, allowAmbient bool) (sink, error) {
	return nil, errors.New("no sink")
}

func outboundClient(timeout time.Duration) *http.Client { return &http.Client{Timeout: timeout} }

func readPublic(ctx context.Context, c *http.Client, url string) ([]byte, string, error) {
	return nil, "", &sinkError{Op: "read_public", Object: url, Reason: reasonUnreachable}
}
