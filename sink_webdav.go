package jwtrotor

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
)

// webdavSink is a publisher's WebDAV base URL: objects are PUT and read at
// <url><name>, with HTTP Basic authentication when a username is set.
type webdavSink struct {
	c          *http.Client
	base       string // ends with a slash (checkWebDAV)
	user, pass string
}

func newWebDAVSink(p *publisherEntry, c *http.Client) *webdavSink {
	return &webdavSink{c: c, base: p.URL, user: p.Username, pass: p.Password}
}

// do sends one request and returns its status and ETag, the body read
// (capped) only when keep is set.
func (s *webdavSink) do(ctx context.Context, op, name, method, url string, body []byte, hdr map[string]string, keep bool) (status int, etag string, out []byte, err error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, "", nil, &sinkError{Op: op, Object: name, Reason: reasonRejected}
	}
	if s.user != "" {
		req.SetBasicAuth(s.user, s.pass)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.c.Do(req)
	if err != nil {
		return 0, "", nil, transportError(op, name, err)
	}
	defer drain(resp.Body)
	if keep && resp.StatusCode == http.StatusOK {
		if out, err = readCapped(op, name, resp.Body); err != nil {
			return 0, "", nil, err
		}
	}
	return resp.StatusCode, resp.Header.Get("ETag"), out, nil
}

// put is a conditional PUT (If-None-Match: * or If-Match: <etag>). A 409
// means a parent collection is missing: each one below the base URL is
// made (MKCOL) and the PUT sent once more.
func (s *webdavSink) put(ctx context.Context, name string, body []byte, cacheControl, ifMatch string) (string, error) {
	hdr := map[string]string{"Content-Type": "application/json", "Cache-Control": cacheControl}
	if ifMatch == "" {
		hdr["If-None-Match"] = "*"
	} else {
		// If-Match compares strongly (RFC 9110, 13.1.1), so a weak ETag
		// never matches as it stands. Apache's mod_dav_fs marks its ETag
		// weak for the second after a write (the file could change again
		// within it unseen) and strong afterwards, with the same opaque
		// tag: the tag sent without W/ matches once that second is over,
		// and until then the write fails as a precondition, never
		// overwriting another version.
		hdr["If-Match"] = strings.TrimPrefix(ifMatch, "W/")
	}
	url := s.base + name
	status, etag, _, err := s.do(ctx, "put", name, http.MethodPut, url, body, hdr, false)
	if err != nil {
		return "", err
	}
	if status == http.StatusConflict {
		if err := s.mkcols(ctx, name); err != nil {
			return "", err
		}
		if status, etag, _, err = s.do(ctx, "put", name, http.MethodPut, url, body, hdr, false); err != nil {
			return "", err
		}
	}
	if status != http.StatusOK && status != http.StatusCreated && status != http.StatusNoContent {
		return "", statusError("put", name, status)
	}
	if etag != "" {
		return etag, nil
	}
	// The server gave no ETag with the PUT (Apache's mod_dav_fs gives
	// none with a 201 or 204): ask with a HEAD. Another
	// writer's PUT between the two would give its ETag, and the next
	// conditional PUT would then fail with a precondition, which the
	// upload code handles; no write is lost.
	status, etag, _, err = s.do(ctx, "put", name, http.MethodHead, url, nil, nil, false)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", statusError("put", name, status)
	}
	if etag == "" {
		return "", &sinkError{Op: "put", Object: name, Reason: reasonGarbage}
	}
	return etag, nil
}

// mkcols makes the collections above name, from the base URL down. A 405
// is a collection that exists already.
func (s *webdavSink) mkcols(ctx context.Context, name string) error {
	segs := strings.Split(name, "/")
	dir := s.base
	for _, seg := range segs[:len(segs)-1] {
		dir += seg + "/"
		status, _, _, err := s.do(ctx, "put", name, "MKCOL", dir, nil, nil, false)
		if err != nil {
			return err
		}
		if status != http.StatusCreated && status != http.StatusMethodNotAllowed {
			return statusError("put", name, status)
		}
	}
	return nil
}

func (s *webdavSink) get(ctx context.Context, name string) ([]byte, string, error) {
	status, etag, body, err := s.do(ctx, "get", name, http.MethodGet, s.base+name, nil, nil, true)
	if err != nil {
		return nil, "", err
	}
	if status != http.StatusOK {
		return nil, "", statusError("get", name, status)
	}
	return body, etag, nil
}
