// Command poller is a minimal JWKS verifier for the acceptance tests: it
// fetches a JWKS URL on a fixed timer, the way most verifier libraries do,
// revalidating with If-None-Match, and writes one JSON line per completed
// fetch so a test can tell exactly which keys it holds. It stops after the
// fetch in flight when it receives SIGTERM or SIGINT.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// fetchLog is one line of the output.
type fetchLog struct {
	Seq int `json:"seq"`
	// Start and End are Unix milliseconds around the request.
	Start  int64    `json:"start"`
	End    int64    `json:"end"`
	Status int      `json:"status"`
	ETag   string   `json:"etag"`
	Kids   []string `json:"kids"` // what the poller holds after this fetch
	Error  string   `json:"error,omitempty"`
}

func main() {
	var (
		rawURL   = flag.String("url", "", "JWKS URL")
		verifier = flag.String("verifier", "", "verifier id, sent as ?verifier=<id> (none: anonymous)")
		ua       = flag.String("user-agent", "", "User-Agent header")
		interval = flag.Duration("interval", 10*time.Second, "time between fetches")
		once     = flag.Bool("once", false, "fetch once, then wait for a signal without ever refreshing")
		out      = flag.String("out", "", "file to append fetch lines to (default stdout)")
	)
	flag.Parse()
	if *rawURL == "" {
		fmt.Fprintln(os.Stderr, "poller: -url is required")
		os.Exit(2)
	}
	u, err := url.Parse(*rawURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "poller: %v\n", err)
		os.Exit(2)
	}
	if *verifier != "" {
		q := u.Query()
		q.Set("verifier", *verifier)
		u.RawQuery = q.Encode()
	}
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "poller: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		w = f
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)

	p := &poller{url: u.String(), ua: *ua, hc: &http.Client{Timeout: 20 * time.Second}, out: bufio.NewWriter(w)}
	for {
		p.fetch()
		if *once {
			<-stop
			return
		}
		select {
		case <-stop:
			return
		case <-time.After(*interval):
		}
	}
}

type poller struct {
	url  string
	ua   string
	hc   *http.Client
	out  *bufio.Writer
	seq  int
	etag string
	kids []string
}

// fetch makes one conditional request and logs what it holds afterwards.
// The request is not tied to the stop signal: once sent, it completes and is
// logged, so the log counts every request the server answered.
func (p *poller) fetch() {
	p.seq++
	rec := fetchLog{Seq: p.seq, Start: time.Now().UnixMilli()}
	status, err := p.request()
	rec.End = time.Now().UnixMilli()
	rec.Status = status
	if err != nil {
		rec.Error = err.Error()
	}
	rec.ETag, rec.Kids = p.etag, p.kids
	line, _ := json.Marshal(rec)
	p.out.Write(append(line, '\n'))
	p.out.Flush()
}

func (p *poller) request() (int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, p.url, nil)
	if err != nil {
		return 0, err
	}
	if p.ua != "" {
		req.Header.Set("User-Agent", p.ua)
	}
	if p.etag != "" {
		req.Header.Set("If-None-Match", p.etag)
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	switch resp.StatusCode {
	case http.StatusNotModified:
		return resp.StatusCode, nil
	case http.StatusOK:
	default:
		return resp.StatusCode, fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return resp.StatusCode, fmt.Errorf("body is not a JWK Set: %w", err)
	}
	kids := make([]string, 0, len(set.Keys))
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	p.etag, p.kids = resp.Header.Get("ETag"), kids
	return resp.StatusCode, nil
}
