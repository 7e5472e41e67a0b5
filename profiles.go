package jwtrotor

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// A publisher's profile is the verifier its copy is for, and what that
// verifier can take. The plugin serves every key it signs with; a cloud
// verifier accepts only some algorithms, some JWK members and some number of
// keys, and a set past its limits fails at the first token, far from the
// change that caused it. So a write that would give a publisher a set its
// profile cannot carry is refused (a 400 naming the ring, the publisher and
// the profile), and a copy that would still break one (a key written before
// the profile was checked, such as one in a stored ring of an older version)
// is not uploaded: the publisher reports reason "profile" instead.
//
// Sources (docs/publishing.md, profiles):
//   - aws: IAM OIDC identity providers take RS256/384/512 and ES256/384/512,
//     at most 100 RSA and 100 EC keys, and an issuer that is https with no
//     port and no query.
//   - gcp: Workload Identity Federation takes RSA and EC keys with only the
//     members kty, alg, use, kid, n, e, x, y and crv.
//   - azure: Microsoft Entra federated credentials take RS256 only.
type profile struct {
	name string
	// algs are the algorithms the verifier takes; nil: every algorithm.
	algs []string
	// members are the JWK members the verifier takes; nil: any.
	members []string
	// maxKeysPerType bounds the keys of one kty; 0: no bound.
	maxKeysPerType int
	// strictIssuer: the issuer must be https without a port or a query
	// (loopback hosts, where test stores run, may use http and a port).
	strictIssuer bool
	source       string
}

const profileGeneric = "generic"

var profiles = map[string]profile{
	profileGeneric: {name: profileGeneric, source: "exactly what the plugin serves"},
	"aws": {name: "aws", algs: []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}, maxKeysPerType: 100, strictIssuer: true,
		source: "AWS IAM OIDC identity providers"},
	"gcp": {name: "gcp", algs: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"},
		members: []string{"kty", "alg", "use", "kid", "n", "e", "x", "y", "crv"}, source: "GCP Workload Identity Federation"},
	"azure": {name: "azure", algs: []string{"RS256"}, source: "Microsoft Entra federated credentials"},
}

// profileNames lists the profiles, generic first, for messages and help.
var profileNames = []string{profileGeneric, "aws", "gcp", "azure"}

// profileOf returns p's profile; a stored publisher without one is generic.
func profileOf(p *publisherEntry) profile {
	if pr, ok := profiles[p.Profile]; ok {
		return pr
	}
	return profiles[profileGeneric]
}

func (pr profile) carries(alg string) bool { return pr.algs == nil || slices.Contains(pr.algs, alg) }

// checkProfileName refuses a profile the plugin does not know.
func checkProfileName(name string) error {
	if _, ok := profiles[name]; !ok {
		return refuse("profile", "%q is not a profile; use one of %s", name, strings.Join(profileNames, ", "))
	}
	return nil
}

// ringAlgorithms are the algorithms of every key r publishes now or will
// publish if no operation intervenes: its live signing keys, the algorithm
// of the keys it will make, and its trusted keys.
func ringAlgorithms(r *ringEntry, now int64) []string {
	set := map[string]bool{}
	if r.DeletedAt == 0 {
		set[r.Algorithm] = true
	}
	for i := range r.Keys {
		if k := &r.Keys[i]; !k.revoked() && k.removeAt() > now {
			set[k.Alg] = true
		}
	}
	for i := range r.Trusted {
		if t := &r.Trusted[i]; t.ExpiresAt > now {
			set[t.Alg] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// ktyOf is the JWK key type of alg.
func ktyOf(alg string) string {
	switch {
	case isRSA(alg):
		return "RSA"
	case strings.HasPrefix(alg, "ES"):
		return "EC"
	}
	return "OKP"
}

// checkProfiles refuses a state of the mount in which a publisher would be
// given a set its profile cannot carry: a ring covered by an aws, gcp or
// azure publisher with an algorithm the profile does not take, more keys of
// one type than the profile allows at any instant from now on (each ring's
// peak, as the bounds count it), or an issuer an aws verifier refuses.
// pubs are the publishers to check (all of the mount's, or the one being
// written); field names what the caller changed.
func checkProfiles(pubs map[string]*publisherEntry, rings map[string]*ringEntry, issuer string, now int64, field string) error {
	for _, name := range slices.Sorted(maps.Keys(pubs)) {
		p := pubs[name]
		pr := profileOf(p)
		if pr.name == profileGeneric {
			continue
		}
		perType := map[string]int{}
		for _, rn := range slices.Sorted(maps.Keys(rings)) {
			r := rings[rn]
			if p.Ring != "" && p.Ring != rn {
				continue
			}
			algs := ringAlgorithms(r, now)
			for _, alg := range algs {
				if !pr.carries(alg) {
					return refuse(field, "ring %q publishes %s keys, and publisher %q has profile=%s, whose verifiers (%s) take only %s; use one of those algorithms for the ring, publish another ring, or give the publisher another profile",
						rn, alg, name, pr.name, pr.source, strings.Join(pr.algs, ", "))
				}
			}
			if pr.maxKeysPerType > 0 {
				n, _ := peakWithRevocation(r, now)
				types := map[string]bool{}
				for _, alg := range algs {
					types[ktyOf(alg)] = true
				}
				for t := range types {
					perType[t] += n
				}
			}
		}
		for _, t := range slices.Sorted(maps.Keys(perType)) {
			if perType[t] > pr.maxKeysPerType {
				return refuse(field, "publisher %q (profile=%s) would publish up to %d %s keys at once, and its verifiers (%s) take at most %d; publish one ring per publisher (ring), or use fewer rings, a longer rotation_period or a shorter verification_ttl",
					name, pr.name, perType[t], t, pr.source, pr.maxKeysPerType)
			}
		}
		if pr.strictIssuer {
			if err := checkStrictIssuer(issuer, name, pr, field); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkStrictIssuer refuses an issuer that AWS refuses: not https, or with
// a port or a query. A loopback host is let through, since only a test
// store can be there.
func checkStrictIssuer(issuer, name string, pr profile, field string) error {
	u, err := url.Parse(issuer)
	if err != nil || u.Host == "" {
		return refuse(field, "publisher %q has profile=%s, and this mount has no usable issuer (%q); set one with vault write config issuer=https://...", name, pr.name, issuer)
	}
	if a, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); (err == nil && a.IsLoopback()) || u.Hostname() == "localhost" {
		return nil
	}
	if u.Scheme != "https" || u.Port() != "" || u.RawQuery != "" {
		return refuse(field, "publisher %q has profile=%s, and its verifiers (%s) take only an issuer that is https with no port and no query, which %q is not; change the issuer (vault write config issuer=...) or the publisher's profile",
			name, pr.name, pr.source, issuer)
	}
	return nil
}

// profileViolation is why a rendered JWKS cannot go to a publisher of
// profile pr, or "" when it can: the last net under the write-time checks,
// so that no copy a verifier would reject is ever uploaded.
func profileViolation(pr profile, jwks []byte) string {
	if pr.name == profileGeneric {
		return ""
	}
	var set struct {
		Keys []map[string]json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(jwks, &set); err != nil {
		return "the JWKS does not parse"
	}
	perType := map[string]int{}
	for _, k := range set.Keys {
		var alg, kty string
		_ = json.Unmarshal(k["alg"], &alg)
		_ = json.Unmarshal(k["kty"], &kty)
		if !pr.carries(alg) {
			return fmt.Sprintf("a key of alg %q", alg)
		}
		if pr.members != nil {
			for m := range k {
				if !slices.Contains(pr.members, m) {
					return fmt.Sprintf("a key with member %q", m)
				}
			}
		}
		perType[kty]++
		if pr.maxKeysPerType > 0 && perType[kty] > pr.maxKeysPerType {
			return fmt.Sprintf("more than %d %s keys", pr.maxKeysPerType, kty)
		}
	}
	return ""
}
