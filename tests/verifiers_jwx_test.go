package tests

import (
	"context"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// jwx's jwk.Cache honours Cache-Control max-age between a minimum and a
// maximum interval (15 minutes and 30 days by default); an operator running
// short periods lowers both so that max-age governs.
func init() {
	verifierKinds = append(verifierKinds, verifierKind{
		name: "jwx", honoursHeaders: true, declared: true,
		// max-age, plus up to a second of the cache's refresh tick.
		staleness: func(d time.Duration) time.Duration { return d + time.Second },
		start:     startJwx,
	})
}

type jwxVerifier struct {
	cache  *jwk.Cache
	set    jwk.Set
	tr     *countingTransport
	cancel context.CancelFunc
	c      verifierConfig
}

func startJwx(ctx context.Context, c verifierConfig) (jwksVerifier, error) {
	hc, tr := countingClient(c.name)
	ctx, cancel := context.WithCancel(ctx)
	cache, err := jwk.NewCache(ctx, httprc.NewClient())
	if err != nil {
		cancel()
		return nil, err
	}
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	err = cache.Register(rctx, c.jwksURL,
		jwk.WithHTTPClient(hc),
		jwk.WithMinInterval(time.Second),
		jwk.WithMaxInterval(c.interval),
		jwk.WithWaitReady(true),
	)
	if err != nil {
		cancel()
		return nil, err
	}
	set, err := cache.CachedSet(c.jwksURL)
	if err != nil {
		cancel()
		return nil, err
	}
	return &jwxVerifier{cache: cache, set: set, tr: tr, cancel: cancel, c: c}, nil
}

func (v *jwxVerifier) verify(_ context.Context, token string) (string, error) {
	kid := tokenKid(token)
	_, err := jwt.Parse([]byte(token),
		jwt.WithKeySet(v.set, jws.WithRequireKid(true)),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.c.issuer),
		jwt.WithAudience(v.c.audience),
		jwt.WithAcceptableSkew(2*time.Second),
	)
	return kid, err
}

func (v *jwxVerifier) fetches() int64 { return v.tr.n.Load() }
func (v *jwxVerifier) close()         { v.cancel() }
