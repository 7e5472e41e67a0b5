package jwtrotor

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	jwksContentType      = "application/jwk-set+json"
	discoveryContentType = "application/json"
	// discoveryScope is the cache key of the discovery document.
	discoveryScope = "\x00discovery"
	// allScope is the cache key of the mount-wide JWKS.
	allScope = ""
)

// renderedJWKS is a served document, rendered once per change of state and
// then answered from memory: a flood of fetches reads no storage and does no
// crypto.
type renderedJWKS struct {
	body         []byte
	etag         string
	lastModified string
	// validUntil is the next instant any included key changes state.
	validUntil int64
	// nextRemoval is when the next published key leaves; max-age stays below.
	nextRemoval int64
	// staleIfError is the shortest publish_lead of the included rings.
	staleIfError int64
	maxAge       int64
	// kids are the published kids, for the verifier tracker.
	kids []string
	// changedAt is when the key set last changed (Last-Modified).
	changedAt int64
	// gen and renderedAt are the state generation and time it was
	// rendered from.
	gen        uint64
	renderedAt int64
}

func pathJWKS(b *backend) []*framework.Path {
	// The answer is a raw body (no Vault envelope), so no fields are
	// declared; HEAD answers the headers alone (Vault's OpenAPI document
	// lists GET, POST, DELETE and PATCH operations only).
	ops := func(cb framework.OperationFunc, suffix, what string) map[logical.Operation]framework.OperationHandler {
		raw := map[int][]framework.Response{http.StatusOK: {{Description: what + ", as a raw body with Cache-Control, ETag and Last-Modified (304 on a matching If-None-Match)."}}}
		return map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: cb, Summary: "Fetch " + what + " (no token).", Responses: raw,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: suffix},
			},
			logical.HeaderOperation: &framework.PathOperation{
				Callback: cb, Summary: "The headers of " + what + " (no token).", Responses: raw,
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "head", OperationSuffix: suffix},
			},
		}
	}
	verifierField := map[string]*framework.FieldSchema{
		"verifier": {Type: framework.TypeString, Description: "Id of the fetching verifier (a query parameter), as declared in config verifiers; it names the fetcher in the verifier report.", Query: true},
	}
	return []*framework.Path{
		{
			Pattern:         "jwks$",
			Fields:          verifierField,
			DisplayAttrs:    &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Operations:      ops(b.pathJWKSRead, "jwks", "the JWKS of every ring"),
			HelpSynopsis:    pathJWKSHelpSyn,
			HelpDescription: pathJWKSHelpDesc,
		},
		{
			Pattern:         `\.well-known/jwks\.json$`,
			Fields:          verifierField,
			DisplayAttrs:    &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Operations:      ops(b.pathJWKSRead, "well-known-jwks", "the JWKS of every ring"),
			HelpSynopsis:    pathJWKSHelpSyn,
			HelpDescription: pathJWKSHelpDesc,
		},
		{
			Pattern:      "jwks/" + framework.GenericNameRegex("name") + "$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Fields: map[string]*framework.FieldSchema{
				"name":     {Type: framework.TypeLowerCaseString, Description: "Key ring whose keys to serve.", Required: true},
				"verifier": verifierField["verifier"],
			},
			Operations:      ops(b.pathJWKSRead, "ring-jwks", "the JWKS of one ring"),
			HelpSynopsis:    "The JWKS of one key ring, for verifiers that trust one ring only.",
			HelpDescription: pathJWKSHelpDesc,
		},
		{
			Pattern:         `\.well-known/openid-configuration$`,
			Fields:          verifierField,
			DisplayAttrs:    &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Operations:      ops(b.pathDiscoveryRead, "openid-configuration", "the OpenID discovery document"),
			HelpSynopsis:    "OpenID discovery document of this issuer.",
			HelpDescription: "Unauthenticated. Names the issuer, the JWKS URL and the signing algorithms in use, so libraries such as go-oidc can find the keys from the issuer URL alone.",
		},
	}
}

func (b *backend) pathJWKSRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	scope, label := allScope, "all"
	if _, ok := d.Raw["name"]; ok {
		// Folded to lower case, as keys/<name> folds it.
		scope = d.Get("name").(string)
		label = scope
		if scope == "" {
			return nil, nil
		}
	}
	return b.serveDocument(ctx, req, scope, label, jwksContentType)
}

func (b *backend) pathDiscoveryRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	resp, err := b.serveDocument(ctx, req, discoveryScope, "discovery", discoveryContentType)
	if err != nil || resp != nil {
		return resp, err
	}
	return &logical.Response{Data: map[string]any{
		logical.HTTPStatusCode:  http.StatusNotFound,
		logical.HTTPContentType: "application/json",
		logical.HTTPRawBody:     []byte(`{"errors":["issuer not configured: write config issuer=<VAULT_ADDR>/v1/<mount>"]}`),
	}}, nil
}

// serveDocument answers one fetch from memory: the rendered document for
// scope, the fetch told to the verifier tracker, and the caching headers,
// all at one reading of the clock. It returns nil when there is no document.
func (b *backend) serveDocument(ctx context.Context, req *logical.Request, scope, label, contentType string) (*logical.Response, error) {
	snap, clk, err := b.state(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := clk.Schedule
	doc, err := b.document(snap, scope, now)
	if err != nil || doc == nil {
		return nil, err
	}
	b.observeFetch(req, snap, scope, doc, now)
	return b.rawResponse(req, label, doc, contentType, now), nil
}

// observeFetch tells the verifier tracker who fetched what.
func (b *backend) observeFetch(req *logical.Request, snap *snapshot, scope string, doc *renderedJWKS, now int64) {
	verifier, _ := req.Data["verifier"].(string)
	addr := ""
	if req.Connection != nil {
		addr = req.Connection.RemoteAddr
	}
	first := func(h string) string {
		if v := req.Headers[h]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	served, kids := doc.etag, doc.kids
	if scope == discoveryScope {
		served, kids = "", nil
	}
	b.tracker.observe(verifier, addr, first("User-Agent"), first("If-None-Match"), scope, served, kids, now, snap.declared.has(verifier, addr))
}

// rawResponse answers with doc as sent bytes, or 304 when the client holds it.
func (b *backend) rawResponse(req *logical.Request, document string, doc *renderedJWKS, contentType string, now int64) *logical.Response {
	status := http.StatusOK
	body := doc.body
	b.metrics.jwksRequests.WithLabelValues(document).Inc()
	if etagMatches(req.Headers["If-None-Match"], doc.etag) {
		status, body = http.StatusNotModified, []byte{}
		b.metrics.notModified.WithLabelValues(document).Inc()
	}
	return &logical.Response{
		Data: map[string]any{
			logical.HTTPStatusCode:         status,
			logical.HTTPContentType:        contentType,
			logical.HTTPRawBody:            body,
			logical.HTTPCacheControlHeader: cacheControl(doc, now),
		},
		Headers: map[string][]string{
			"ETag":          {doc.etag},
			"Last-Modified": {doc.lastModified},
		},
	}
}

// cacheControl bounds max-age by jwks_max_age and by the next scheduled
// removal, then takes off up to a tenth at random so verifiers started
// together drift apart instead of refetching in a stampede.
func cacheControl(doc *renderedJWKS, now int64) string {
	n := doc.maxAge
	if doc.nextRemoval != forever {
		if until := doc.nextRemoval - now; until < n {
			n = until
		}
	}
	if n > 10 {
		n -= rand.Int64N(n/10 + 1)
	}
	if n < 1 {
		n = 1
	}
	return fmt.Sprintf("public, max-age=%d, stale-if-error=%d", n, doc.staleIfError)
}

// etagMatches implements If-None-Match: a list of entity tags, weak or
// strong (weak comparison, RFC 9110 13.1.2), or *.
func etagMatches(headers []string, etag string) bool {
	for _, h := range headers {
		for _, t := range strings.Split(h, ",") {
			t = strings.TrimSpace(t)
			if t == "*" || strings.TrimPrefix(t, "W/") == etag {
				return true
			}
		}
	}
	return false
}

// document returns the rendered document for scope, re-rendering only when
// state changed or a key crossed a timestamp since the last rendering. A
// document rendered from a snapshot that a write or an invalidation has
// since replaced is served to this request but never cached, so no later
// request sees a key set older than the state it was answered from.
func (b *backend) document(snap *snapshot, scope string, now int64) (*renderedJWKS, error) {
	b.mu.RLock()
	doc, ok := b.jwks[scope]
	b.mu.RUnlock()
	if ok && doc.gen == snap.gen && doc.renderedAt <= now && now < doc.validUntil {
		return doc, nil
	}
	doc, err := render(snap, scope, now)
	if err != nil || doc == nil {
		return doc, err
	}
	if b.afterRender != nil {
		b.afterRender()
	}
	b.mu.Lock()
	if b.gen == snap.gen {
		b.jwks[scope] = doc
	}
	b.mu.Unlock()
	return doc, nil
}

type jwksBody struct {
	Keys []json.RawMessage `json:"keys"`
}

type discoveryBody struct {
	Issuer          string   `json:"issuer"`
	JWKSURI         string   `json:"jwks_uri"`
	SigningAlgs     []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypes   []string `json:"response_types_supported"`
	SubjectTypes    []string `json:"subject_types_supported"`
	ClaimsSupported []string `json:"claims_supported"`
}

func render(snap *snapshot, scope string, now int64) (*renderedJWKS, error) {
	var rings []*ringEntry
	if scope == allScope || scope == discoveryScope {
		for _, n := range slices.Sorted(maps.Keys(snap.rings)) {
			rings = append(rings, snap.rings[n])
		}
	} else {
		r := snap.rings[scope]
		if r == nil {
			return nil, nil
		}
		rings = []*ringEntry{r}
	}
	doc := &renderedJWKS{validUntil: forever, nextRemoval: forever, maxAge: snap.config.JWKSMaxAge, staleIfError: -1, gen: snap.gen, renderedAt: now}
	keys := []json.RawMessage{}
	algs := map[string]bool{}
	// lastChange is the latest moment the key set changed: derived from the
	// timestamps, so every node and every scope agrees on Last-Modified.
	lastChange := int64(0)
	for _, r := range rings {
		lastChange = max(lastChange, r.LastRemoval)
		for i := range r.Keys {
			k := &r.Keys[i]
			if k.published(now) {
				keys = append(keys, k.PublicJWK)
				doc.kids = append(doc.kids, k.KID)
				algs[k.Alg] = true
				lastChange = max(lastChange, k.PublishAt)
			}
			if k.RevokedAt != 0 && k.RevokedAt <= now {
				lastChange = max(lastChange, k.RevokedAt)
			}
			if k.RemoveAt != 0 && k.RemoveAt <= now {
				lastChange = max(lastChange, k.RemoveAt)
			}
		}
		for i := range r.Trusted {
			t := &r.Trusted[i]
			if t.published(now) {
				keys = append(keys, t.PublicJWK)
				doc.kids = append(doc.kids, t.KID)
				algs[t.Alg] = true
				lastChange = max(lastChange, t.AddedAt)
			}
			if t.ExpiresAt <= now {
				lastChange = max(lastChange, t.ExpiresAt)
			}
		}
		if t := ringNextBoundary(r, now); t < doc.validUntil {
			doc.validUntil = t
		}
		if t := ringNextRemoval(r, now); t < doc.nextRemoval {
			doc.nextRemoval = t
		}
		if r.DeletedAt == 0 && (doc.staleIfError < 0 || r.PublishLead < doc.staleIfError) {
			doc.staleIfError = r.PublishLead
		}
	}
	if doc.staleIfError < 0 {
		doc.staleIfError = doc.maxAge
	}
	var body []byte
	var err error
	if scope == discoveryScope {
		iss := snap.config.Issuer
		if iss == "" {
			return nil, nil
		}
		list := make([]string, 0, len(algs))
		for a := range algs {
			list = append(list, a)
		}
		if !algs["RS256"] {
			// OpenID Connect Discovery requires RS256 to be listed; no
			// RS256 key exists to verify with, so it admits nothing.
			list = append(list, "RS256")
		}
		sort.Strings(list)
		body, err = json.Marshal(discoveryBody{
			Issuer:          iss,
			JWKSURI:         iss + "/jwks",
			SigningAlgs:     list,
			ResponseTypes:   []string{"id_token"},
			SubjectTypes:    []string{"public"},
			ClaimsSupported: reservedClaims,
		})
		// The discovery document does not change with key states, only
		// with which algorithms are published.
	} else {
		body, err = json.Marshal(jwksBody{Keys: keys})
	}
	if err != nil {
		return nil, fmt.Errorf("render JWKS: %w", err)
	}
	sum := sha256.Sum256(body)
	doc.body = body
	doc.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	doc.lastModified = time.Unix(lastChange, 0).UTC().Format(http.TimeFormat)
	doc.changedAt = lastChange
	return doc, nil
}

const pathJWKSHelpSyn = `The JSON Web Key Set of this issuer (no token needed).`

const pathJWKSHelpDesc = `
Unauthenticated. Returns every published public key of every ring as a raw
application/jwk-set+json body: pending keys (published before they sign), the
active key, and retiring keys until their remove_at. Cache-Control max-age is
at most jwks_max_age and never beyond the next scheduled removal; an ETag
allows conditional requests (If-None-Match → 304) when the mount is tuned with
allowed_response_headers=ETag,Last-Modified and
passthrough_request_headers=If-None-Match,User-Agent.

The body is rendered once per change and served from memory. Put a Vault
rate-limit quota on this path and a CDN or caching proxy in front of it for
internet-facing verifiers.
`
