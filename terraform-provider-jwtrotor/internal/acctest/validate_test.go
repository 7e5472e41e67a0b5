package acctest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// validationCases are configurations that can be refused without Vault,
// each with the one message terraform validate must give for it, on the
// attribute it names.
var validationCases = []struct {
	addr, body, attr, msg string
}{
	{"jwtrotor_key_ring.hmac", `name = "a"
  algorithm = "HS256"`, "algorithm", `algorithm: "HS256" is not supported; use one of RS256`},
	{"jwtrotor_key_ring.small_rsa", `name = "b"
  rsa_bits = 1024`, "rsa_bits", `rsa_bits: 1024 is not supported; use one of [2048 3072 4096]`},
	{"jwtrotor_key_ring.duration_words", `name = "c"
  rotation_period = "1 day"`, "rotation_period", `"1 day" is not a duration; write it like 24h, 90m, 1h30m or 3600 (seconds)`},
	{"jwtrotor_key_ring.fractional", `name = "d"
  rotation_period = "1500ms"`, "rotation_period", `"1500ms" is not a whole number of seconds`},
	{"jwtrotor_key_ring.short_period", `name = "e"
  rotation_period = "5s"`, "rotation_period", `rotation_period: "5s" (5s) is outside at least 10s`},
	{"jwtrotor_key_ring.gate_delay", `name = "f"
  rotation_period = "1h"
  max_activation_delay = "2h"`, "max_activation_delay", `max_activation_delay: 7200s is above rotation_period (3600s)`},
	{"jwtrotor_key_ring.gate_no_delay", `name = "g"
  min_verifier_coverage = 0.5`, "min_verifier_coverage", `max_activation_delay: must be above 0 when min_verifier_coverage is set`},
	{"jwtrotor_key_ring.coverage", `name = "h"
  min_verifier_coverage = 1.5
  max_activation_delay = "1h"`, "min_verifier_coverage", `min_verifier_coverage: 1.5 is outside 0 to 1`},
	{"jwtrotor_key_ring.too_many_keys", `name = "i"
  rotation_period = "1h"
  publish_lead = "10h"
  verification_ttl = "1h"`, "rotation_period", `(publish_lead 36000s + verification_ttl 3600s) / rotation_period 3600s is above 10`},
	{"jwtrotor_key_ring.upper_case", `name = "Payments"`, "name", `name: "Payments" is not a usable name`},
	{"jwtrotor_role.ttl_above_max", `name = "r1"
  key = "k"
  audiences = ["a"]
  ttl = "2h"
  max_ttl = "1h"`, "ttl", `ttl: 7200s is above max_ttl (3600s)`},
	{"jwtrotor_role.reserved_claim", `name = "r2"
  key = "k"
  audiences = ["a"]
  claims = jsonencode({ sub = "x" })`, "claims", `claims: "sub" is reserved`},
	{"jwtrotor_role.claims_list", `name = "r3"
  key = "k"
  audiences = ["a"]
  claims = jsonencode([1, 2])`, "claims", `not a JSON object; write it with jsonencode({...})`},
	{"jwtrotor_role.no_audience", `name = "r4"
  key = "k"
  audiences = []`, "audiences", `audiences: required; give at least 1`},
	{"jwtrotor_role.token_type", `name = "r5"
  key = "k"
  audiences = ["a"]
  token_type = "jwt"`, "token_type", `token_type: "jwt" is not supported; use one of JWT, at+jwt`},
	{"jwtrotor_role.subject_glob", `name = "r6"
  key = "k"
  audiences = ["a"]
  allowed_subjects = ["a*b"]`, "allowed_subjects", `allowed_subjects: "a*b" may use '*' once, only at the start or the end`},
	{"jwtrotor_role.static_and_caller", `name = "r7"
  key = "k"
  audiences = ["a"]
  claims = jsonencode({ tier = "gold" })
  allowed_claims = ["tier"]`, "allowed_claims", `allowed_claims: "tier" is also a static claim of this role`},
	{"jwtrotor_config.trailing_slash", `issuer = "https://vault.example.com/v1/jwt/"`, "issuer", `ends with a slash`},
	{"jwtrotor_config.cidr", `issuer = "https://vault.example.com/v1/jwt"
  verifier_cidrs = ["10.0.0.0"]`, "verifier_cidrs", `verifier_cidrs: "10.0.0.0" is not a CIDR range`},
	{"jwtrotor_config.max_age", `issuer = "https://vault.example.com/v1/jwt"
  jwks_max_age = "25h"`, "jwks_max_age", `jwks_max_age: "25h" (90000s) is outside 1s to 24h;`},
	{"jwtrotor_config.twice", `issuer = "https://vault.example.com/v1/jwt"
  verifiers = ["gateway", "gateway"]`, "verifiers", `verifiers: "gateway" appears twice`},
	{"jwtrotor_rotation.bad_ring", `ring = "Payments"`, "ring", `ring: "Payments" is not a usable name`},
	{"jwtrotor_publisher.no_version", `name = "p1"
  type = "s3"
  secret_access_key = "x"`, "secret_access_key", `secret_access_key: needs credentials_wo_version`},
	{"jwtrotor_publisher.upper_case", `name = "Keys"
  type = "webdav"`, "name", `name: "Keys" is not a usable name`},
}

// valid resources use every attribute and must draw no diagnostic.
const validResources = `
resource "jwtrotor_key_ring" "valid" {
  name                  = "valid-ring_1.a"
  algorithm             = "PS384"
  rsa_bits              = 3072
  rotation_period       = "3600"
  publish_lead          = "1h30m"
  verification_ttl      = "2h"
  min_verifier_coverage = 0.9
  max_activation_delay  = "30m"
  force_destroy         = true
}

resource "jwtrotor_role" "valid" {
  name             = "valid"
  key              = jwtrotor_key_ring.valid.name
  audiences        = ["https://api.example.com"]
  ttl              = "15m"
  max_ttl          = "15m"
  subject_template = "{{identity.entity.name}}"
  allowed_subjects = ["*@example.com", "svc-*", "*"]
  claims           = jsonencode({ tier = "gold", nested = { a = [1, 2] } })
  allowed_claims   = ["scope"]
  token_type       = "at+jwt"
}

resource "jwtrotor_config" "valid" {
  issuer         = "https://vault.example.com:8200/v1/jwt"
  jwks_max_age   = "24h"
  verifiers      = ["gateway", "billing"]
  verifier_cidrs = ["10.0.0.0/8", "2001:db8::/32"]
}

resource "jwtrotor_rotation" "valid" {
  ring                = jwtrotor_key_ring.valid.name
  triggers            = { quarter = "2026Q1" }
  force               = true
  revoke_active       = false
  expected_active_kid = "abc"
}

resource "jwtrotor_publisher" "valid" {
  name                   = "valid"
  type                   = "s3"
  bucket                 = "keys"
  region                 = "eu-west-1"
  endpoint               = "https://s3.example.com"
  path_style             = true
  url                    = "https://dav.example.com/"
  account_url            = "https://account.example.com/"
  account_name           = "account"
  container              = "keys"
  prefix                 = "tenant-a/"
  jwks_path              = "jwks.json"
  ring                   = jwtrotor_key_ring.valid.name
  public_url             = "https://keys.example.com/tenant-a/"
  required               = true
  access_key_id          = "a"
  secret_access_key      = "s"
  session_token          = "t"
  username               = "u"
  password               = "p"
  account_key            = "k"
  sas_token              = "sas"
  credentials_json       = "{}"
  credentials_wo_version = 1
}
`

// Plan-time validation, through the real Terraform CLI and without Vault:
// terraform validate (which never configures the provider) reports exactly
// one error per bad resource, with the expected message, on the attribute
// it names; resources that use every attribute correctly draw none.
func TestAccPlanTimeValidation(t *testing.T) {
	need(t)
	var config strings.Builder
	config.WriteString(validResources)
	for _, c := range validationCases {
		typ, name, _ := strings.Cut(c.addr, ".")
		fmt.Fprintf(&config, "\nresource %q %q {\n  %s\n}\n", typ, name, c.body)
	}
	d := newTerraformDir(t, config.String())
	if out, errOut, ok := d.run("init", "-input=false", "-no-color"); !ok {
		t.Fatalf("terraform init: %s%s", out, errOut)
	}
	out, errOut, ok := d.run("validate", "-json", "-no-color")
	if ok {
		t.Fatalf("terraform validate accepted every bad resource: %s", out)
	}
	var result struct {
		ErrorCount  int `json:"error_count"`
		Diagnostics []struct {
			Severity string `json:"severity"`
			Summary  string `json:"summary"`
			Detail   string `json:"detail"`
			Address  string `json:"address"`
			Snippet  *struct {
				Code string `json:"code"`
			} `json:"snippet"`
		} `json:"diagnostics"`
	}
	if err := json.Unmarshal([]byte(out), &result); err != nil {
		t.Fatalf("terraform validate -json: %v\n%s%s", err, out, errOut)
	}
	got := map[string][]string{}
	for _, diag := range result.Diagnostics {
		code := ""
		if diag.Snippet != nil {
			code = diag.Snippet.Code
		}
		got[diag.Address] = append(got[diag.Address], fmt.Sprintf("%s: %s: %s [%s]", diag.Severity, diag.Summary, diag.Detail, strings.TrimSpace(code)))
	}
	for _, c := range validationCases {
		diags := got[c.addr]
		delete(got, c.addr)
		if len(diags) != 1 {
			t.Errorf("%s: %d diagnostics, want 1: %q", c.addr, len(diags), diags)
			continue
		}
		if !strings.HasPrefix(diags[0], "error: ") || !strings.Contains(diags[0], c.msg) {
			t.Errorf("%s: %q, want an error with %q", c.addr, diags[0], c.msg)
		}
		// The snippet is the line of the attribute the message is about.
		if !regexp.MustCompile(`\[` + regexp.QuoteMeta(c.attr) + `\s*=`).MatchString(diags[0]) {
			t.Errorf("%s: %q does not point at %s", c.addr, diags[0], c.attr)
		}
	}
	var rest []string
	for addr, diags := range got {
		rest = append(rest, fmt.Sprintf("%s: %q", addr, diags))
	}
	sort.Strings(rest)
	if len(rest) > 0 {
		t.Errorf("diagnostics for resources that are valid: %s", strings.Join(rest, "; "))
	}
	if result.ErrorCount != len(validationCases) {
		t.Errorf("terraform validate counted %d errors, want %d", result.ErrorCount, len(validationCases))
	}
}

// The harness seals provider installation: terraform init of a
// configuration that needs any provider it does not serve fails on the
// empty local mirror, without reaching the network (TestMain fails the run
// if anything reached the proxy).
func TestAccNoRegistryAccess(t *testing.T) {
	need(t)
	d := newTerraformDir(t, `
terraform {
  required_providers {
    null = { source = "hashicorp/null" }
  }
}
`)
	out, errOut, ok := d.run("init", "-input=false", "-no-color")
	if ok {
		t.Fatalf("terraform init installed a provider it should not reach: %s", out)
	}
	if !strings.Contains(out+errOut, "Failed to query available provider packages") {
		t.Errorf("terraform init failed otherwise than on the empty mirror: %s%s", out, errOut)
	}
	if n, first := env.proxyHits.count(); n != 0 {
		t.Errorf("terraform init reached the network %d time(s): %s", n, first)
	}
}
