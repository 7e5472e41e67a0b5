package jwtrotor

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// profileAlgs is the table of docs/publishing.md (profiles), written out
// here rather than read from profiles.go: which algorithms each profile's
// verifiers take.
var profileAlgs = map[string][]string{
	"generic": supportedAlgorithms,
	"aws":     {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"},
	"gcp":     {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"},
	"azure":   {"RS256"},
}

// jwkMembers are the members a published key of alg has: the public key's
// own and kty, kid, alg and use; never a private member.
func jwkMembers(alg string) []string {
	switch {
	case strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS"):
		return []string{"alg", "e", "kid", "kty", "n", "use"}
	case alg == "EdDSA":
		return []string{"alg", "crv", "kid", "kty", "use", "x"}
	}
	return []string{"alg", "crv", "kid", "kty", "use", "x", "y"}
}

// For every profile and every algorithm, a publisher of the profile over a
// ring of the algorithm is either written, and its copy then holds the
// ring's keys with exactly the members the profile's verifiers take, or
// refused with a 400 that names the ring, the algorithm, the publisher and
// the profile, with nothing stored.
func TestProfileCopyForEveryAlgorithm(t *testing.T) {
	t.Parallel()
	for _, prof := range []string{"generic", "aws", "gcp", "azure"} {
		for _, alg := range supportedAlgorithms {
			t.Run(prof+"/"+alg, func(t *testing.T) {
				t.Parallel()
				e := newEnv(t)
				e.setupRing("k", alg, nil)
				stores := withStores(e)
				before := dump(t, e.storage)
				resp, err := e.write("publishers/site", davPublisher(map[string]any{"ring": "k", "profile": prof}))
				if !slices.Contains(profileAlgs[prof], alg) {
					expect400(t, resp, err, "profile", `ring "k"`, alg, `publisher "site"`, "profile="+prof)
					if !maps.Equal(before, dump(t, e.storage)) {
						t.Fatal("a refused publisher changed storage")
					}
					return
				}
				if err != nil || resp.IsError() {
					t.Fatalf("profile %s refused a ring of %s: %v %s", prof, alg, err, respErr(resp))
				}
				if got := e.read("publishers/site").Data["profile"]; got != prof {
					t.Fatalf("profile reads back as %v, written %s", got, prof)
				}
				e.publishPass()
				o, ok := stores["https://keys.example.com/dav/"].object(".well-known/jwks.json")
				if !ok {
					t.Fatalf("no copy; report %v", e.publisherReport("site"))
				}
				_, served, _ := e.jwks("jwks/k")
				if string(o.body) != string(served) {
					t.Fatalf("the copy is\n%s\nand the ring serves\n%s", o.body, served)
				}
				var set struct {
					Keys []map[string]json.RawMessage `json:"keys"`
				}
				if err := json.Unmarshal(o.body, &set); err != nil || len(set.Keys) == 0 {
					t.Fatalf("copy %s: %v", o.body, err)
				}
				for _, k := range set.Keys {
					got := slices.Sorted(maps.Keys(k))
					if !slices.Equal(got, jwkMembers(alg)) {
						t.Fatalf("a %s key of the copy has members %v, want %v", alg, got, jwkMembers(alg))
					}
					if prof == "gcp" {
						for _, m := range got {
							if !slices.Contains([]string{"kty", "alg", "use", "kid", "n", "e", "x", "y", "crv"}, m) {
								t.Fatalf("a gcp copy holds member %q", m)
							}
						}
					}
				}
			})
		}
	}
}

// A later change that would give a publisher a set its profile cannot
// carry is refused the same way: the ring's algorithm, a ring created under
// a mount-wide publisher, a trusted key of another algorithm.
func TestProfileRefusesLaterChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "RS256", nil)
	e.mustWrite("publishers/entra", davPublisher(map[string]any{"profile": "azure"}))
	before := dump(t, e.storage)
	resp, err := e.write("keys/k", map[string]any{"algorithm": "ES256"})
	expect400(t, resp, err, "algorithm", `ring "k"`, "ES256", `publisher "entra"`, "profile=azure")
	resp, err = e.write("keys/other", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	expect400(t, resp, err, "algorithm", `ring "other"`, "EdDSA", `publisher "entra"`)
	resp, err = e.write("keys/k/trust", map[string]any{"jwk": publicJWKMap(t, newTestKey(t, "P-256").Public(), "old-1", "ES256", nil), "expires_at": e.clock.Now().Unix() + 3600})
	expect400(t, resp, err, `publisher "entra"`, "ES256")
	if !maps.Equal(before, dump(t, e.storage)) {
		t.Fatal("a refused change altered storage")
	}
	// A ring the publisher does not cover is not its concern.
	e.mustWrite("publishers/entra", map[string]any{"ring": "k"})
	e.mustWrite("keys/other", map[string]any{"algorithm": "EdDSA", "rotation_period": "1h", "verification_ttl": "2h", "publish_lead": "10m"})
	e.mustWrite("keys/other", map[string]any{"algorithm": "ES384"})
}

// An aws verifier takes at most 100 keys of one type: a publisher, or a
// later ring, that would publish more at any instant from now on (each
// ring's peak) is refused, naming the count; one ring per publisher is
// the way out.
func TestProfileAWSKeyCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt", "jwks_max_age": 19})
	ring := map[string]any{"algorithm": "ES256", "rotation_period": "10s", "verification_ttl": "61s", "publish_lead": "39s"}
	e.setupRing("r0", "ES256", ring)
	e.mustWrite("publishers/sts", davPublisher(map[string]any{"profile": "aws"}))
	var refused int
	for i := 1; i < 20 && refused == 0; i++ {
		before := dump(t, e.storage)
		resp, err := e.write(fmt.Sprintf("keys/r%d", i), ring)
		if err == nil && !resp.IsError() {
			continue
		}
		expect400(t, resp, err, "algorithm", `publisher "sts"`, "EC keys", "at most 100")
		if !maps.Equal(before, dump(t, e.storage)) {
			t.Fatal("a refused ring changed storage")
		}
		refused = i
	}
	// A ring of these settings may publish 24 keys at once: pending keys
	// stocked up to publish_lead plus two maintenance ticks ahead (159 s,
	// 16 keys), the active key, and the retiring keys of the last 61 s
	// verification_ttl plus a period (7 keys). Four rings stay within 100
	// EC keys; the fifth (r4) would pass them.
	if refused != 4 {
		t.Fatalf("ring r%d was refused; want r4, the first to take the mount past 100 EC keys", refused)
	}
	// One ring per publisher is the way out.
	e.mustWrite("publishers/sts", map[string]any{"ring": "r0"})
	e.mustWrite(fmt.Sprintf("keys/r%d", refused), ring)
	resp, err := e.write("publishers/all", davPublisher(map[string]any{"url": "https://all.example.com/", "profile": "aws"}))
	expect400(t, resp, err, "profile", `publisher "all"`, "EC keys", "at most 100")
}

// An aws verifier takes only an https issuer without a port or a query; a
// loopback host, where only a test store can be, may have both.
func TestProfileAWSIssuer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "RS256", nil)
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com:8200/v1/jwt"})
	resp, err := e.write("publishers/sts", davPublisher(map[string]any{"profile": "aws"}))
	expect400(t, resp, err, "profile", `publisher "sts"`, "no port", "vault.example.com:8200")
	e.mustWrite("config", map[string]any{"issuer": "https://vault.example.com/v1/jwt"})
	e.mustWrite("publishers/sts", davPublisher(map[string]any{"profile": "aws"}))
	resp, err = e.write("config", map[string]any{"issuer": "http://vault.example.com/v1/jwt"})
	expect400(t, resp, err, "issuer", `publisher "sts"`, "https")
	e.mustWrite("config", map[string]any{"issuer": "http://127.0.0.1:9000/keys"})
}

// The last net: a copy that breaks its profile (here, one stored by a
// version that did not check profiles) is not uploaded; the publisher
// reports failing with reason profile, and the metric counts it.
func TestProfileCopyThatBreaksItIsNotUploaded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.setupRing("k", "ES256", nil)
	stores := withStores(e)
	e.mustWrite("publishers/entra", davPublisher(nil))
	p := *e.b.publishers["entra"]
	p.Profile = "azure"
	if err := putJSON(t.Context(), e.storage, publisherPrefix+"entra", &p); err != nil {
		t.Fatal(err)
	}
	e.b.cachePublisher("entra", &p)
	e.publishPass()
	if st := stores["https://keys.example.com/dav/"]; st != nil && st.puts != 0 {
		t.Fatalf("%d uploads of a copy its profile cannot carry", st.puts)
	}
	rep := e.publisherReport("entra")
	if rep["state"] != "failing" || rep["last_error_reason"] != reasonProfile {
		t.Fatalf("report %v", rep)
	}
	if n := metricSeries(e, "jwt_rotor_publisher_failures_total", "publisher=entra", "reason=profile"); n < 1 {
		t.Fatalf("failures{reason=profile} = %v", n)
	}
}

// profileViolation, the net under the write-time checks, on sets no write
// can produce: a member gcp does not take, and 101 EC keys for aws.
func TestProfileViolation(t *testing.T) {
	t.Parallel()
	ec := `{"kty":"EC","kid":"k%d","use":"sig","alg":"ES256","crv":"P-256","x":"AA","y":"AA"}`
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf(ec, i)
	}
	for _, c := range []struct {
		profile, jwks, want string
	}{
		{"gcp", `{"keys":[{"kty":"RSA","kid":"a","alg":"RS256","n":"AQ","e":"AQAB","x5t":"abc"}]}`, `member "x5t"`},
		{"gcp", `{"keys":[{"kty":"RSA","kid":"a","alg":"RS256","use":"sig","n":"AQ","e":"AQAB"}]}`, ""},
		{"aws", `{"keys":[` + strings.Join(many, ",") + `]}`, "more than 100 EC keys"},
		{"aws", `{"keys":[` + strings.Join(many[:100], ",") + `]}`, ""},
		{"azure", `{"keys":[{"kty":"RSA","kid":"a","alg":"PS256","n":"AQ","e":"AQAB"}]}`, `alg "PS256"`},
		{"generic", `{"keys":[{"kty":"OKP","kid":"a","alg":"EdDSA","x5t":"y"}]}`, ""},
	} {
		if got := profileViolation(profiles[c.profile], []byte(c.jwks)); !strings.Contains(got, c.want) || (c.want == "") != (got == "") {
			t.Errorf("%s: violation %q, want %q", c.profile, got, c.want)
		}
	}
}
