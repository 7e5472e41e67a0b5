package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// TestPublishingVerifiers guards the property publishing exists for:
// verifiers that cannot reach Vault and read only the published copies
// (the JWKS, and for go-oidc the discovery document that points at it)
// verify every live token through rotations, a rollback and a
// revocation, stop accepting a revoked key's tokens within the bound
// docs/publishing.md gives, and go on verifying every token signed before
// Vault dies until it expires. Once per store: S3 (versitygw), WebDAV
// (Apache mod_dav, which keeps no header of a PUT: its configuration
// sends Cache-Control: max-age=jwks_max_age, the most the plugin sends)
// Azure Blob Storage (Azurite) and Cloud Storage (fake-gcs-server, with a
// service account key).
// The issuer is the copy's public base, public_url that plus "/".
// Each store's run takes about two and a half minutes; they run in
// parallel.
func TestPublishingVerifiers(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"s3", "webdav", "azure_blob", "gcs"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			runPublishingVerifiers(t, store)
		})
	}
}

func runPublishingVerifiers(t *testing.T, storeName string) {
	const (
		maxAge    = 5
		period    = 15
		lead      = 15
		verifyTTL = 120
		ttl       = 15
		probeTTL  = 35
		alg       = "ES256"

		// Kid changes the signer must see: five scheduled rotations, the
		// rollback and the revocation of the active key.
		wantChanges = 7
		rollbackAt  = 2 // after this many changes
		revokeAt    = 4
		signEvery   = 300 * time.Millisecond
		lateMargin  = 6 * time.Second
	)
	var store publishedStore
	switch storeName {
	case "s3":
		store, _ = s3Published(t)
	case "azure_blob":
		store, _ = azurePublished(t)
	case "gcs":
		store, _ = gcsPublished(t)
	default:
		store, _ = webdavPublished(t, maxAge)
	}
	d := startDedicated(t, testserver.DevOptions{})
	m := d.mount(t, "jwt", map[string]any{"issuer": store.issuer(), "jwks_max_age": maxAge})
	m.issuer = store.issuer()
	d.root.mustWrite(t, m.p("publishers/copy"), store.publisher(nil))

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	// The copies exist (an empty key set, and the discovery document)
	// before any ring does: verifiers start from them.
	watch := watchCopy(t, store.jwksURL(), 100*time.Millisecond)
	watch.awaitBody(t, time.Now(), func() []byte { return servedJWKS(d.server.Addr, m.path) }, 30*time.Second)
	status, disc, err := getCopy(ctx, store.base+".well-known/openid-configuration")
	if err != nil || status != http.StatusOK {
		t.Fatalf("discovery document copy: status %d, %v", status, err)
	}
	var discovery struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(disc, &discovery); err != nil || discovery.Issuer != store.issuer() || discovery.JWKSURI != store.jwksURL() {
		t.Fatalf("discovery document copy %s: want issuer %s and jwks_uri %s (%v)", disc, store.issuer(), store.jwksURL(), err)
	}

	base := verifierConfig{issuer: m.issuer, audience: apiAudience, alg: alg, interval: maxAge * time.Second}
	vs := startVerifiers(t, ctx, base, func(verifierKind) string { return store.jwksURL() })

	d.root.mustWrite(t, m.p("keys/pub"), map[string]any{
		"algorithm": alg, "rotation_period": period, "publish_lead": lead, "verification_ttl": verifyTTL,
	})
	for role, life := range map[string]int{"pub": ttl, "probe": probeTTL} {
		d.root.mustWrite(t, m.p("roles/"+role), map[string]any{
			"key": "pub", "audiences": []string{apiAudience}, "ttl": life, "max_ttl": life,
		})
	}
	resp := d.root.mustRead(t, m.p("keys/pub"))
	first, ok := ringFromData(t, "pub", resp.Data).nextPending()
	if !ok {
		t.Fatal("new ring has no pending key")
	}
	firstAt := time.Unix(first.ActivateAt, 0)

	// Checks of a revoked key's tokens: either verdict until the bound,
	// a rejection after it.
	var (
		revMu     sync.Mutex
		revokedAt = map[string]time.Time{}
		accepted  []string
		excluded  int
	)
	pipe := newPipeline(ctx, vs, lateMargin)
	pipe.exclude = func(name string, s signedToken, late bool, err error) bool {
		revMu.Lock()
		defer revMu.Unlock()
		at, ok := revokedAt[s.kid]
		if !ok {
			return false
		}
		excluded++
		if k := kindNamed(name); err == nil && k.staleness(maxAge*time.Second) > 0 && time.Since(at) > rejectionBound(k, maxAge*time.Second) {
			accepted = append(accepted, fmt.Sprintf("%s accepted token #%d of revoked kid %s %s after the revocation", name, s.seq, s.kid, time.Since(at).Round(100*time.Millisecond)))
		}
		return true
	}

	time.Sleep(time.Until(firstAt.Add(time.Second)))
	var (
		tokens    []signedToken
		kidOrder  []string
		signFails []string
		rolledTo  string
		rolledOff string // the key the rollback took off signing; it signs again at its new activation
		revoked   string
		killedAt  time.Time
		bounds    []string
		// rejections receives checkRejections' report, started at the
		// revocation.
		rejections = make(chan []string, 1)
		last       signedToken
	)
	deadline := firstAt.Add(time.Duration(wantChanges+3) * period * time.Second)
	for seq := 1; time.Now().Before(deadline); seq++ {
		tick := time.Now()
		s, err := signRole(ctx, d.signer, m, "pub")
		if err != nil {
			signFails = append(signFails, err.Error())
			if len(signFails) > 20 {
				break
			}
		} else {
			s.seq = seq
			tokens = append(tokens, s)
			last = s
			kidOrder = noteSigningKid(t, kidOrder, s.kid, rolledTo, rolledOff)
			pipe.dispatch(s)
		}
		changes := len(kidOrder) - 1
		switch {
		case changes == rollbackAt && rolledTo == "":
			r := d.root.mustWrite(t, m.p("keys/pub/rollback"), map[string]any{})
			rolledTo = str(t, r.Data, "active_kid")
			rolledOff = kidOrder[len(kidOrder)-1]
			t.Logf("rollback at %s: %s signs again", time.Now().Format("15:04:05.000"), rolledTo)
		case changes == revokeAt && revoked == "":
			p, err := signBody(ctx, d.signer, m.p("sign/probe"), map[string]any{})
			if err != nil {
				t.Fatal(err)
			}
			r := d.root.mustWrite(t, m.p("keys/pub/revoke"), map[string]any{"kid": p.kid})
			at := time.Now()
			revoked = str(t, r.Data, "revoked")
			if revoked != p.kid {
				t.Fatalf("revoked %s, want the active key %s", revoked, p.kid)
			}
			revMu.Lock()
			revokedAt[revoked] = at
			revMu.Unlock()
			watch.ban(revoked, at)
			go func() { rejections <- checkRejections(t, vs, p, at, maxAge*time.Second) }()
			t.Logf("revoked the active key %s at %s", revoked, at.Format("15:04:05.000"))
		}
		if changes >= wantChanges && revoked != "" && bounds == nil {
			select {
			case bounds = <-rejections:
			default:
			}
		}
		if changes >= wantChanges && bounds != nil {
			break
		}
		time.Sleep(time.Until(tick.Add(signEvery)))
	}
	if revoked == "" || rolledTo == "" {
		t.Fatalf("kid changes %v: the rollback (%q) or the revocation (%q) did not happen", kidOrder, rolledTo, revoked)
	}

	// The revoked key left the copy within revokedGoneBound, and
	// every verifier that refreshes on its own rejects the probe token
	// (alive for probeTTL) after its bound.
	gone := watch.awaitGone(t, revoked, revokedGoneBound)
	if bounds == nil {
		bounds = <-rejections
	}

	// A token that outlives the kill, signed just before it.
	final, err := signBody(ctx, d.signer, m.p("sign/probe"), map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	final.seq = -1
	pipe.dispatch(final)
	killedAt = time.Now()
	kill9Dev(t, d.server)
	t.Logf("killed Vault (kill -9) at %s; the last token of the loop expires at %s, the final one at %s",
		killedAt.Format("15:04:05.000"), time.Unix(last.exp, 0).Format(time.TimeOnly), time.Unix(final.exp, 0).Format(time.TimeOnly))
	fetchesAtKill := map[string]int64{}
	for name, v := range vs {
		fetchesAtKill[name] = v.fetches()
	}
	afterKill := 0
	for _, s := range append(slices.Clone(tokens), final) {
		if time.Unix(s.exp, 0).Add(-lateMargin).After(killedAt) && s.kid != revoked {
			afterKill++
		}
	}
	pipe.finish()

	table := pipe.judge(t, nil)
	changes := len(kidOrder) - 1
	if changes < wantChanges {
		t.Errorf("%d kid changes (%v), want at least %d: %d rotations, the rollback and the revocation", changes, kidOrder, wantChanges, wantChanges-2)
	}
	if len(signFails) > 0 {
		t.Errorf("%d sign calls failed, first: %s", len(signFails), signFails[0])
	}
	revMu.Lock()
	for _, a := range accepted {
		t.Error(a)
	}
	revMu.Unlock()
	// The copies answered with Vault dead: every library that polls
	// fetched them again after the kill, and the late checks of tokens
	// signed before it (at least the final one) ran after it.
	for name, v := range vs {
		if k := kindNamed(name); k.staleness(maxAge*time.Second) > 0 && v.fetches() >= 0 && v.fetches() <= fetchesAtKill[name] {
			t.Errorf("%s fetched no copy after Vault was killed (%d fetches)", name, v.fetches())
		}
	}
	if afterKill == 0 {
		t.Error("no token was checked after the kill")
	}
	reads := watch.verdict(t)
	t.Logf("%s: %d tokens over %d kid changes (%d rotations, %v; rollback to %s, revoked %s), %d checks of the revoked key's tokens excluded; revoked kid left the copy after %s (bound %s); rejections: %s; %d tokens checked after the kill; %d copy reads\n%s",
		store.name, len(tokens)+1, changes, changes-2, kidOrder, rolledTo, revoked, excluded, gone.Round(10*time.Millisecond), revokedGoneBound,
		strings.Join(bounds, "; "), afterKill, reads, table)
}

// checkRejections verifies tok, whose key was revoked at revokedAt, with
// every verifier until each that refreshes on its own rejects it, and
// fails the test for an acceptance after the verifier's rejection bound or
// an acceptance after a rejection. A verifier that refetches only for an
// unknown kid (go-oidc) cannot be bounded: its verdict is reported.
func checkRejections(t *testing.T, vs map[string]jwksVerifier, tok signedToken, revokedAt time.Time, maxAge time.Duration) []string {
	t.Helper()
	var (
		mu    sync.Mutex
		lines []string
		wg    sync.WaitGroup
	)
	for _, k := range verifierKinds {
		v := vs[k.name]
		if k.staleness(maxAge) == 0 {
			continue
		}
		bound := rejectionBound(k, maxAge)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var rejectedAt time.Duration
			for {
				checked := time.Since(revokedAt)
				_, err := v.verify(context.Background(), tok.token)
				switch {
				case err == nil && rejectedAt > 0:
					t.Errorf("%s accepted the revoked key's token %s after the revocation, after rejecting it at %s", k.name, checked.Round(100*time.Millisecond), rejectedAt.Round(100*time.Millisecond))
					return
				case err == nil && checked > bound:
					t.Errorf("%s still accepts the revoked key's token %s after the revocation, bound %s", k.name, checked.Round(100*time.Millisecond), bound)
					return
				case err != nil && rejectedAt == 0:
					rejectedAt = checked
				}
				if rejectedAt > 0 && checked > rejectedAt+2*time.Second {
					mu.Lock()
					lines = append(lines, fmt.Sprintf("%s after %s (bound %s)", k.name, rejectedAt.Round(100*time.Millisecond), bound))
					mu.Unlock()
					return
				}
				time.Sleep(250 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, k := range verifierKinds {
		if k.staleness(maxAge) != 0 {
			continue
		}
		if _, err := vs[k.name].verify(context.Background(), tok.token); err == nil {
			lines = append(lines, k.name+" still accepts (refetches only for an unknown kid; not bounded)")
		} else {
			lines = append(lines, k.name+" rejects")
		}
	}
	slices.Sort(lines)
	return lines
}
