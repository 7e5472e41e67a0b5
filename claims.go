package jwtrotor

import (
	"encoding/json"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/vault/sdk/helper/identitytpl"
)

// The checks of claims, subjects and subject templates: what a role may
// store and what a caller may ask for. The role write (path_roles.go), the
// sign path (path_sign.go) and the input checks (validate.go) all use them.

// reservedClaims are set by the plugin from Vault's clock, the role and the
// config; neither a role nor a caller may set them. The discovery document
// lists them as its claims_supported. This is the one list; the Terraform
// provider's copy is compared with it by its tests.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// isReserved reports whether name is a reserved claim in any case.
func isReserved(name string) bool {
	return slices.ContainsFunc(reservedClaims, func(r string) bool { return strings.EqualFold(r, name) })
}

// checkSubjectTemplate accepts a static subject or a Vault identity template
// that renders in ACL mode (no JSON, no nested braces).
func checkSubjectTemplate(t string) error {
	if t == "" {
		return refuse("subject_template", "empty; use {{identity.entity.id}} (the default) or a static subject")
	}
	if len(t) > maxTemplateLen || !utf8.ValidString(t) {
		return refuse("subject_template", "must be valid UTF-8 of at most %d bytes", maxTemplateLen)
	}
	if !strings.Contains(t, "{{") && !strings.Contains(t, "}}") {
		return nil
	}
	_, _, err := identitytpl.PopulateString(identitytpl.PopulateStringInput{
		Mode: identitytpl.ACLTemplating, String: t, ValidityCheckOnly: true,
	})
	if err != nil {
		return refuse("subject_template", "%v; use Vault identity templating such as {{identity.entity.id}} or {{identity.entity.name}}", err)
	}
	for _, d := range templateDirectives(t) {
		if !subjectDirective.MatchString(d) {
			return refuse("subject_template", "{{%s}} is not an entity directive; use identity.entity.id, identity.entity.name, identity.entity.metadata.<key> or identity.entity.aliases.<mount accessor>.(id|name|metadata.<key>)", d)
		}
	}
	return nil
}

// templateDirectives returns the trimmed directives of a template, in order.
func templateDirectives(t string) []string {
	var out []string
	for _, piece := range strings.Split(t, "{{")[1:] {
		out = append(out, strings.TrimSpace(strings.SplitN(piece, "}}", 2)[0]))
	}
	return out
}

// renderEntityID renders a template whose only directive is the entity id,
// which the request carries; ok is false if it uses anything else.
func renderEntityID(t, entityID string) (string, bool) {
	for _, d := range templateDirectives(t) {
		if d != "identity.entity.id" {
			return "", false
		}
	}
	pieces := strings.Split(t, "{{")
	var b strings.Builder
	b.WriteString(pieces[0])
	for _, p := range pieces[1:] {
		b.WriteString(entityID)
		b.WriteString(strings.SplitN(p, "}}", 2)[1])
	}
	return b.String(), true
}

// subjectDirective is the part of Vault identity templating a subject may
// use: values of the caller's own entity.
var subjectDirective = regexp.MustCompile(`^identity\.entity\.(id|name|metadata\.[^.{}\s]+|aliases\.[^.{}\s]+\.(id|name|metadata\.[^.{}\s]+|custom_metadata\.[^.{}\s]+))$`)

func checkGlob(g string) error {
	if g == "" || !utf8.ValidString(g) {
		return refuse("allowed_subjects", "an entry is empty or not UTF-8; give subjects such as spiffe://example.org/* ")
	}
	n := strings.Count(g, "*")
	if n == 0 || g == "*" {
		return nil
	}
	if n > 1 || !(strings.HasPrefix(g, "*") || strings.HasSuffix(g, "*")) {
		return refuse("allowed_subjects", "%q may use '*' once, only at the start or the end (such as svc-* or *@example.com)", g)
	}
	return nil
}

func globMatch(g, s string) bool {
	switch {
	case g == "*":
		return true
	case strings.HasSuffix(g, "*"):
		return strings.HasPrefix(s, strings.TrimSuffix(g, "*"))
	case strings.HasPrefix(g, "*"):
		return strings.HasSuffix(s, strings.TrimPrefix(g, "*"))
	}
	return g == s
}

// Limits on claims, so a token stays small enough for HTTP headers and a
// hostile request cannot make the plugin build a huge one.
const (
	maxClaims      = 64
	maxClaimsBytes = 8 * 1024
	maxClaimsDepth = 5
)

func checkClaimName(field, name string) error {
	if name == "" || len(name) > maxClaimNameLen || !utf8.ValidString(name) {
		return refuse(field, "claim names must be 1 to %d bytes of UTF-8", maxClaimNameLen)
	}
	return nil
}

func checkClaimsObject(field string, m map[string]any) error {
	if len(m) > maxClaims {
		return refuse(field, "%d claims is above the limit of %d; send fewer", len(m), maxClaims)
	}
	names := make([]string, 0, len(m))
	for name, v := range m {
		if err := checkClaimName(field, name); err != nil {
			return err
		}
		if v == nil {
			return refuse(field, "%q is null; a claim is either present with a value or absent, and verifiers differ on which null means, so remove it or give it a value", name)
		}
		// EqualFold, not ToLower: it folds as Go's encoding/json matches
		// field names (s and U+017F, k and the Kelvin sign), so a verifier
		// can never be made to read one claim for another.
		for _, other := range names {
			if strings.EqualFold(other, name) {
				return refuse(field, "%q and %q differ only in case; verifiers may read either, so keep one", other, name)
			}
		}
		names = append(names, name)
		if depth(v) > maxClaimsDepth {
			return refuse(field, "%q nests deeper than %d levels; flatten it", name, maxClaimsDepth)
		}
		if err := checkClaimValue(field, name, v); err != nil {
			return err
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return refuse(field, "not encodable as JSON: %v", err)
	}
	if len(b) > maxClaimsBytes {
		return refuse(field, "%d bytes of JSON is above the limit of %d; send less", len(b), maxClaimsBytes)
	}
	return nil
}

// checkClaimValue refuses text that is not UTF-8 and numbers no verifier
// can decode (beyond float64).
func checkClaimValue(field, name string, v any) error {
	switch t := v.(type) {
	case string:
		if !utf8.ValidString(t) {
			return refuse(field, "%q has a value that is not valid UTF-8; send text", name)
		}
	case json.Number:
		if f, err := t.Float64(); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return refuse(field, "%q has the number %s, beyond what verifiers can decode; send a smaller number or a string", name, t.String())
		}
	case float64:
		if math.IsInf(t, 0) || math.IsNaN(t) {
			return refuse(field, "%q is not a finite number", name)
		}
	case map[string]any:
		for k, e := range t {
			if !utf8.ValidString(k) {
				return refuse(field, "%q has a member name that is not valid UTF-8", name)
			}
			if err := checkClaimValue(field, name, e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := checkClaimValue(field, name, e); err != nil {
				return err
			}
		}
	}
	return nil
}

func depth(v any) int {
	switch t := v.(type) {
	case map[string]any:
		d := 0
		for _, e := range t {
			if x := depth(e); x > d {
				d = x
			}
		}
		return d + 1
	case []any:
		d := 0
		for _, e := range t {
			if x := depth(e); x > d {
				d = x
			}
		}
		return d + 1
	}
	return 0
}

// staticClaimNamed finds a static claim whose name equals name in any case:
// a caller's "Scope" must not sit beside a static "scope", since verifiers
// may read either.
func staticClaimNamed(claims map[string]any, name string) (string, bool) {
	for k := range claims {
		if strings.EqualFold(k, name) {
			return k, true
		}
	}
	return "", false
}
