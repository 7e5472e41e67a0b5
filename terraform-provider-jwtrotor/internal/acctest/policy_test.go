package acctest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/vault/api"
)

// policyConfig is a rotation policy as code: the mount's config, a ring, a
// role that signs with it, a rotation resource, and the data sources a
// consumer of the keys would read.
func policyConfig(mount, token, issuer, period, lead, generation, extra string) string {
	// Address and token given explicitly here; the other tests take them
	// from VAULT_ADDR and VAULT_TOKEN.
	return fmt.Sprintf(`
provider "jwtrotor" {
  address = %q
  token   = %q
  mount   = %q
}
`, env.addr, token, mount) + fmt.Sprintf(`
resource "jwtrotor_config" "this" {
  issuer = %q
}

resource "jwtrotor_key_ring" "payments" {
  name             = "payments"
  algorithm        = "ES256"
  rotation_period  = %q
  publish_lead     = %q
  verification_ttl = "3h"
}

resource "jwtrotor_role" "api" {
  name             = "api"
  key              = jwtrotor_key_ring.payments.name
  audiences        = ["https://payments.example.com"]
  subject_template = "svc-terraform"
  max_ttl          = "1h"
}

# Rotates once per generation; force makes the promoted key sign at once.
resource "jwtrotor_rotation" "payments" {
  ring     = jwtrotor_key_ring.payments.name
  force    = true
  triggers = { generation = %q }
}

data "jwtrotor_jwks" "payments" {
  ring       = jwtrotor_key_ring.payments.name
  depends_on = [jwtrotor_rotation.payments]
}

data "jwtrotor_jwks" "all" {
  depends_on = [jwtrotor_rotation.payments]
}

data "jwtrotor_key_ring" "payments" {
  name       = jwtrotor_key_ring.payments.name
  depends_on = [jwtrotor_rotation.payments]
}

data "jwtrotor_openid_configuration" "this" {
  depends_on = [jwtrotor_config.this, jwtrotor_rotation.payments]
}
%s`, issuer, period, lead, generation, extra)
}

// signed is a token the plugin signed, and the kid it names.
type signed struct{ token, kid string }

func sign(t *testing.T, mount, role string) signed {
	t.Helper()
	s := vaultWrite(t, mount+"/sign/"+role, map[string]any{})
	tok, _ := s.Data["token"].(string)
	kid, _ := s.Data["kid"].(string)
	if tok == "" || kid == "" {
		t.Fatalf("sign/%s gave no token or kid: %v", role, s.Data)
	}
	return signed{tok, kid}
}

// verify checks a token against a JWKS document with go-jose, accepting
// ES256 only, and returns its iss claim.
func verify(jwksJSON string, tok signed) (string, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(jwksJSON), &set); err != nil {
		return "", fmt.Errorf("JWKS: %w", err)
	}
	jws, err := jose.ParseSignedCompact(tok.token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", err
	}
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if kid != tok.kid || len(keys) != 1 {
		return "", fmt.Errorf("token kid %q (signer said %q): %d keys in the JWKS", kid, tok.kid, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return "", err
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	return claims.Iss, nil
}

// The scenario the provider exists for. A period and lead change moves no
// existing key; a new rotation generation rotates exactly once; a second
// apply does nothing; a rotation pinned to a key that no longer signs does
// nothing; tokens signed before and after verify against the JWKS the data
// source hands to consumers; nothing secret is in the state.
func TestAccPolicyAsCode(t *testing.T) {
	need(t)
	mount := newMount(t, "policy")
	issuer := env.addr + "/v1/" + mount
	const (
		ring     = "jwtrotor_key_ring.payments"
		rotation = "jwtrotor_rotation.payments"
		forced   = "manual, forced"
	)
	var (
		k1, k2      string // the first active kid, and the kid pending after step 2
		before      map[string]keyTimes
		tok1, tok2  signed
		rotationIDs []string
	)
	// The provider gets its own token, which must appear nowhere in the state.
	created, err := env.root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"root"}})
	if err != nil {
		t.Fatal(err)
	}
	token := created.Auth.ClientToken
	// The provider block's address and token win over the environment.
	t.Setenv("VAULT_ADDR", "http://127.0.0.1:1")
	t.Setenv("VAULT_TOKEN", "not-a-token")
	v1 := policyConfig(mount, token, issuer, "1h", "30m", "1", "")
	v2 := policyConfig(mount, token, issuer, "2h", "45m", "1", "")
	v3 := policyConfig(mount, token, issuer, "2h", "45m", "2", "")

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		Steps: []resource.TestStep{
			{
				// The ring's first key is forced active in the same apply
				// that creates the ring.
				Config: v1,
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(rotation, "rotated", "true"),
					resource.TestCheckResourceAttr(rotation, "expected_active_kid", ""),
					resource.TestCheckResourceAttrPair(rotation, "promoted_kid", "data.jwtrotor_key_ring.payments", "active_kid"),
					func(s *terraform.State) error {
						a, err := attrs(s, rotation)
						if err != nil {
							return err
						}
						k1 = a["promoted_kid"]
						rotationIDs = append(rotationIDs, a["id"])
						if got := vaultRead(t, mount+"/keys/payments")["active_kid"]; got != k1 || k1 == "" {
							return fmt.Errorf("Vault's active kid is %v, the rotation promoted %q", got, k1)
						}
						if n := rotationsTotal(t, mount, "payments", forced); n != 1 {
							return fmt.Errorf("%v forced rotations after the first apply, want 1", n)
						}
						tok1 = sign(t, mount, "api")
						if tok1.kid != k1 {
							return fmt.Errorf("signed with %s, want the active %s", tok1.kid, k1)
						}
						before = ringKeys(t, mount, "payments")
						return nil
					},
				),
			},
			{
				// A longer period and lead: the ring changes in place, the
				// rotation resource does not, no key moves.
				Config: v2,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(ring, plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(rotation, plancheck.ResourceActionNoop),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(ring, "rotation_period", "2h"),
					resource.TestCheckResourceAttr(ring, "publish_lead", "45m"),
					func(s *terraform.State) error {
						if err := keysUnmoved(before, ringKeys(t, mount, "payments")); err != nil {
							return err
						}
						a, err := attrs(s, ring)
						if err != nil {
							return err
						}
						k2 = a["pending_kid"]
						if k2 == "" || k2 == k1 || a["active_kid"] != k1 {
							return fmt.Errorf("active %q, pending %q; want %s active and another key pending", a["active_kid"], k2, k1)
						}
						if n := rotationsTotal(t, mount, "payments", forced); n != 1 {
							return fmt.Errorf("%v forced rotations after a settings change, want 1", n)
						}
						return nil
					},
				),
			},
			{
				// A new generation replaces the rotation resource, which
				// rotates exactly once: the pending key signs, the old one
				// retires.
				Config: v3,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(rotation, plancheck.ResourceActionDestroyBeforeCreate),
					plancheck.ExpectResourceAction(ring, plancheck.ResourceActionNoop),
				}},
				Check: func(s *terraform.State) error {
					a, err := attrs(s, rotation)
					if err != nil {
						return err
					}
					rotationIDs = append(rotationIDs, a["id"])
					if a["rotated"] != "true" || a["expected_active_kid"] != k1 || a["previous_kid"] != k1 || a["promoted_kid"] != k2 {
						return fmt.Errorf("rotation: rotated %s, expected %s, %s -> %s; want %s -> %s", a["rotated"], a["expected_active_kid"], a["previous_kid"], a["promoted_kid"], k1, k2)
					}
					if n := rotationsTotal(t, mount, "payments", forced); n != 2 {
						return fmt.Errorf("%v forced rotations after one new generation, want 2", n)
					}
					data := vaultRead(t, mount+"/keys/payments")
					if data["active_kid"] != k2 {
						return fmt.Errorf("Vault's active kid is %v, want %s", data["active_kid"], k2)
					}
					tok2 = sign(t, mount, "api")
					if tok2.kid != k2 {
						return fmt.Errorf("signed with %s, want %s", tok2.kid, k2)
					}
					return nil
				},
			},
			{
				// The same configuration again: nothing to do, nothing done.
				Config: v3,
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectEmptyPlan(),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					func(s *terraform.State) error {
						d, err := attrs(s, "data.jwtrotor_key_ring.payments")
						if err != nil {
							return err
						}
						if d["active_kid"] != k2 || d["pending_kid"] == k2 || d["pending_kid"] == "" {
							return fmt.Errorf("key ring data source: active %s, pending %s; want %s active and a new key pending", d["active_kid"], d["pending_kid"], k2)
						}
						if n := rotationsTotal(t, mount, "payments", forced); n != 2 {
							return fmt.Errorf("%v forced rotations after a no-op apply, want 2", n)
						}
						// Both tokens verify against what the data sources
						// hand to a consumer: one ring's set and the mount's.
						for _, ds := range []string{"data.jwtrotor_jwks.payments", "data.jwtrotor_jwks.all"} {
							a, err := attrs(s, ds)
							if err != nil {
								return err
							}
							for _, tok := range []signed{tok1, tok2} {
								iss, err := verify(a["json"], tok)
								if err != nil {
									return fmt.Errorf("%s: token of %s: %w", ds, tok.kid, err)
								}
								if iss != issuer {
									return fmt.Errorf("iss %q, want %q", iss, issuer)
								}
							}
							if a["kids.#"] == "0" || !strings.Contains(a["json"], k1) || !strings.Contains(a["json"], k2) {
								return fmt.Errorf("%s: kids %s, want %s and %s among them", ds, a["kids.#"], k1, k2)
							}
						}
						d, err = attrs(s, "data.jwtrotor_openid_configuration.this")
						if err != nil {
							return err
						}
						if d["issuer"] != issuer || !strings.HasPrefix(d["jwks_uri"], issuer+"/") || d["id_token_signing_alg_values_supported.0"] != "ES256" {
							return fmt.Errorf("discovery: issuer %s, jwks_uri %s, algs %s", d["issuer"], d["jwks_uri"], d["id_token_signing_alg_values_supported.0"])
						}
						return noSecrets(s, token)
					},
				),
			},
			{
				// A rotation pinned to k1, which no longer signs: the
				// plugin does nothing, as it would for a retried request.
				Config: policyConfig(mount, token, issuer, "2h", "45m", "2", `
resource "jwtrotor_rotation" "stale" {
  ring                = jwtrotor_key_ring.payments.name
  expected_active_kid = jwtrotor_rotation.payments.previous_kid
  force               = true
}
`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr("jwtrotor_rotation.stale", "rotated", "false"),
					resource.TestCheckResourceAttrPair("jwtrotor_rotation.stale", "expected_active_kid", rotation, "previous_kid"),
					resource.TestCheckResourceAttrPair("jwtrotor_rotation.stale", "previous_kid", rotation, "promoted_kid"),
					func(*terraform.State) error {
						if n := rotationsTotal(t, mount, "payments", forced); n != 2 {
							return fmt.Errorf("%v forced rotations after a stale rotation, want 2", n)
						}
						if got := vaultRead(t, mount+"/keys/payments")["active_kid"]; got != k2 {
							return fmt.Errorf("active kid %v after a stale rotation, want %s", got, k2)
						}
						return nil
					},
				),
			},
		},
	})
	if len(rotationIDs) != 2 {
		t.Errorf("rotation ids %v, want one per generation", rotationIDs)
	}
}

// noSecrets fails if any value in the state holds the Vault token or a
// private JWK member.
func noSecrets(s *terraform.State, token string) error {
	for addr, rs := range s.RootModule().Resources {
		for k, v := range rs.Primary.Attributes {
			if strings.Contains(v, token) {
				return fmt.Errorf("%s.%s holds the Vault token", addr, k)
			}
			if strings.HasSuffix(k, "json") {
				var doc struct {
					Keys []map[string]any `json:"keys"`
				}
				if json.Unmarshal([]byte(v), &doc) == nil {
					for _, key := range doc.Keys {
						for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
							if _, ok := key[private]; ok {
								return fmt.Errorf("%s.%s has a JWK with the private member %q", addr, k, private)
							}
						}
					}
				}
			}
		}
	}
	return nil
}
