package provider

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
)

// Plan-time checks of what can be known without Vault. Each message says
// what is wrong and what to write instead, like the plugin's; everything
// that needs Vault's state (other rings, roles, the config) is left to the
// plugin, whose message comes back as the diagnostic.

// stringCheck validates a known string with check, which returns a message
// or "".
type stringCheck struct {
	desc  string
	check func(string) string
}

func (v stringCheck) Description(context.Context) string         { return v.desc }
func (v stringCheck) MarkdownDescription(context.Context) string { return v.desc }
func (v stringCheck) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if msg := v.check(req.ConfigValue.ValueString()); msg != "" {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid value", msg)
	}
}

func oneOf(name string, allowed ...string) validator.String {
	return stringCheck{
		desc: name + " is one of " + strings.Join(allowed, ", "),
		check: func(s string) string {
			for _, a := range allowed {
				if s == a {
					return ""
				}
			}
			return fmt.Sprintf("%s: %q is not supported; use one of %s", name, s, strings.Join(allowed, ", "))
		},
	}
}

// durationBetween bounds a duration attribute, in seconds; max < 0 means no
// upper bound.
func durationBetween(name string, min, max int64, why string) validator.String {
	return stringCheck{
		desc: fmt.Sprintf("%s is a duration of at least %s", name, FormatDuration(min)),
		check: func(s string) string {
			n, err := ParseDuration(s)
			if err != nil {
				return "" // the type's own check reports the syntax
			}
			if n < min || (max >= 0 && n > max) {
				bound := "at least " + FormatDuration(min)
				if max >= 0 {
					bound = FormatDuration(min) + " to " + FormatDuration(max)
				}
				return fmt.Sprintf("%s: %q (%ds) is outside %s; %s", name, s, n, bound, why)
			}
			return ""
		},
	}
}

type intOneOf struct {
	name    string
	allowed []int64
}

func (v intOneOf) Description(context.Context) string {
	return fmt.Sprintf("%s is one of %v", v.name, v.allowed)
}
func (v intOneOf) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (v intOneOf) ValidateInt64(_ context.Context, req validator.Int64Request, resp *validator.Int64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	n := req.ConfigValue.ValueInt64()
	for _, a := range v.allowed {
		if n == a {
			return
		}
	}
	resp.Diagnostics.AddAttributeError(req.Path, "Invalid value", fmt.Sprintf("%s: %d is not supported; use one of %v", v.name, n, v.allowed))
}

type floatBetween struct {
	name   string
	lo, hi float64
	why    string
}

func (v floatBetween) Description(context.Context) string {
	return fmt.Sprintf("%s is between %v and %v", v.name, v.lo, v.hi)
}
func (v floatBetween) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (v floatBetween) ValidateFloat64(_ context.Context, req validator.Float64Request, resp *validator.Float64Response) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	if f := req.ConfigValue.ValueFloat64(); f < v.lo || f > v.hi {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid value", fmt.Sprintf("%s: %v is outside %v to %v; %s", v.name, f, v.lo, v.hi, v.why))
	}
}

// listCheck validates the known items of a list of strings: their number,
// duplicates and each item.
type listCheck struct {
	name     string
	min, max int // max 0: no bound
	unique   bool
	item     func(string) string
}

func (v listCheck) Description(context.Context) string {
	return fmt.Sprintf("%s: a list of strings", v.name)
}
func (v listCheck) MarkdownDescription(ctx context.Context) string { return v.Description(ctx) }
func (v listCheck) ValidateList(ctx context.Context, req validator.ListRequest, resp *validator.ListResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	elems := req.ConfigValue.Elements()
	if len(elems) < v.min {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid value", fmt.Sprintf("%s: required; give at least %d", v.name, v.min))
		return
	}
	if v.max > 0 && len(elems) > v.max {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid value", fmt.Sprintf("%s: %d items is above the limit of %d", v.name, len(elems), v.max))
		return
	}
	seen := map[string]bool{}
	for i, e := range elems {
		s, ok := e.(types.String)
		if !ok || s.IsNull() || s.IsUnknown() {
			continue
		}
		if v.unique && seen[s.ValueString()] {
			resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid value",
				fmt.Sprintf("%s: %q appears twice; the plugin keeps one, so list it once", v.name, s.ValueString()))
		}
		seen[s.ValueString()] = true
		if v.item != nil {
			if msg := v.item(s.ValueString()); msg != "" {
				resp.Diagnostics.AddAttributeError(req.Path.AtListIndex(i), "Invalid value", msg)
			}
		}
	}
}

// The single-value rules below restate the plugin's (path_config.go,
// path_roles.go) so they fail at plan time; the plugin checks them again.

func checkIssuerURL(s string) string {
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\r\n") {
		return fmt.Sprintf("issuer: %q contains white space; verifiers compare iss exactly, so give a plain URL", s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Sprintf("issuer: %q is not an absolute http(s) URL; use the URL verifiers will see, such as https://vault.example.com/v1/jwt", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Sprintf("issuer: %q has a query, fragment or user info; OpenID issuers may not, so remove it", s)
	}
	if strings.HasSuffix(s, "/") {
		return fmt.Sprintf("issuer: %q ends with a slash; remove it", s)
	}
	return ""
}

func checkVerifierID(id string) string {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, " \t\r\n&?#/") {
		return fmt.Sprintf("verifiers: %q is not a usable id; use up to 128 characters without spaces or any of &?#/", id)
	}
	return ""
}

func checkCIDR(s string) string {
	if _, _, err := net.ParseCIDR(s); err != nil {
		return fmt.Sprintf("verifier_cidrs: %q is not a CIDR range; write it like 10.0.0.0/8 or 2001:db8::/32", s)
	}
	return ""
}

func checkAudience(a string) string {
	if strings.TrimSpace(a) == "" || a != strings.TrimSpace(a) {
		return fmt.Sprintf("audiences: %q is empty or has surrounding spaces; audiences are matched exactly", a)
	}
	if len(a) > 512 {
		return fmt.Sprintf("audiences: an audience of %d bytes is longer than the 512-byte limit", len(a))
	}
	return ""
}

func checkSubjectGlob(g string) string {
	if g == "" {
		return "allowed_subjects: an entry is empty; give subjects such as spiffe://example.org/*"
	}
	n := strings.Count(g, "*")
	if n == 0 || g == "*" {
		return ""
	}
	if n > 1 || !(strings.HasPrefix(g, "*") || strings.HasSuffix(g, "*")) {
		return fmt.Sprintf("allowed_subjects: %q may use '*' once, only at the start or the end (such as svc-* or *@example.com)", g)
	}
	return ""
}

// nameCheck accepts the names the plugin's paths match, in lower case (the
// plugin lower-cases them): letters, digits and _, with - and . inside.
func nameCheck(what string) validator.String {
	return stringCheck{
		desc: what + " is a name the plugin's paths accept",
		check: func(s string) string {
			ok := s != ""
			for i, r := range s {
				word := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_'
				inner := (r == '-' || r == '.') && i > 0 && i < len(s)-1
				ok = ok && (word || inner)
			}
			if !ok {
				return fmt.Sprintf("%s: %q is not a usable name; use lower-case letters, digits and _, with - and . only inside", what, s)
			}
			return ""
		},
	}
}

type mountPathValidator struct{}

func (mountPathValidator) Description(context.Context) string {
	return "a mount path without leading or trailing slashes"
}
func (v mountPathValidator) MarkdownDescription(ctx context.Context) string {
	return v.Description(ctx)
}
func (mountPathValidator) ValidateString(_ context.Context, req validator.StringRequest, resp *validator.StringResponse) {
	if req.ConfigValue.IsNull() || req.ConfigValue.IsUnknown() {
		return
	}
	s := req.ConfigValue.ValueString()
	if s == "" || strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") || strings.Contains(s, "//") || strings.ContainsAny(s, " ?#") {
		resp.Diagnostics.AddAttributeError(req.Path, "Invalid mount", fmt.Sprintf("mount: %q is not a mount path; write it like jwt or teams/payments/jwt", s))
	}
}
