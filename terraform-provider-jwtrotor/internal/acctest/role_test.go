package acctest

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

func roleConfig(mount, name, body string) string {
	return providerBlock(mount) + fmt.Sprintf(`
resource "jwtrotor_key_ring" "signer" {
  name             = "signer"
  algorithm        = "ES256"
  rotation_period  = "1h"
  publish_lead     = "30m"
  verification_ttl = "2h"
}

resource "jwtrotor_role" "api" {
  name      = %q
  key       = jwtrotor_key_ring.signer.name
  audiences = ["https://api.example.com"]
  %s
}
`, name, body)
}

// A role's life in Terraform: create with the plugin's defaults, no drift,
// update in place, a removed attribute returning to its default, import,
// an out-of-band change shown and undone, the plugin's refusal kept
// verbatim, replacement on a new name, destroy.
func TestAccRoleLifecycle(t *testing.T) {
	need(t)
	mount := newMount(t, "role-life")
	const addr = "jwtrotor_role.api"
	full := `ttl              = "15m"
  max_ttl          = "1h"
  token_type       = "at+jwt"
  subject_template = "{{identity.entity.name}}"
  allowed_subjects = ["svc-*"]
  claims           = jsonencode({ tier = "gold", limits = { rps = 10, burst = [1, 2] } })
  allowed_claims   = ["scope", "region"]`

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		CheckDestroy: func(*terraform.State) error {
			for _, p := range []string{"roles/api", "roles/api-v2", "keys/signer"} {
				if d := vaultRead(t, mount+"/"+p); d != nil {
					return fmt.Errorf("%s still readable after destroy", p)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config: roleConfig(mount, "api", `ttl     = "10m"
  max_ttl = "30m"
  claims  = jsonencode({ tier = "gold" })`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "id", "api"),
					resource.TestCheckResourceAttr(addr, "key", "signer"),
					resource.TestCheckResourceAttr(addr, "ttl", "10m"),
					resource.TestCheckResourceAttr(addr, "subject_template", "{{identity.entity.id}}"),
					resource.TestCheckResourceAttr(addr, "token_type", "JWT"),
					resource.TestCheckResourceAttr(addr, "allowed_claims.#", "0"),
					checkPath(t, mount+"/roles/api", map[string]any{
						"key": "signer", "audiences": []string{"https://api.example.com"}, "ttl": 600, "max_ttl": 1800,
						"subject_template": "{{identity.entity.id}}", "token_type": "JWT",
						"claims": map[string]any{"tier": "gold"}, "allowed_claims": []string{}, "allowed_subjects": []string{},
					}),
				),
			},
			{
				Config: roleConfig(mount, "api", full),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: checkPath(t, mount+"/roles/api", map[string]any{
					"ttl": 900, "max_ttl": 3600, "token_type": "at+jwt", "subject_template": "{{identity.entity.name}}",
					"allowed_subjects": []string{"svc-*"}, "allowed_claims": []string{"scope", "region"},
					"claims": map[string]any{"tier": "gold", "limits": map[string]any{"rps": 10, "burst": []int{1, 2}}},
				}),
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateId:     "api",
				ImportStateVerify: true,
			},
			{
				// Out of band: a shorter ttl and one more caller claim.
				PreConfig: func() {
					vaultWrite(t, mount+"/roles/api", map[string]any{"ttl": 120, "allowed_claims": []string{"scope", "region", "admin"}})
				},
				Config: roleConfig(mount, "api", full),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					expectChange{addr: addr, attr: "ttl", before: "2m", after: "15m"},
					expectChange{addr: addr, attr: "allowed_claims", before: []string{"scope", "region", "admin"}, after: []string{"scope", "region"}},
				}},
				Check: checkPath(t, mount+"/roles/api", map[string]any{"ttl": 900, "allowed_claims": []string{"scope", "region"}}),
			},
			{
				// Taking allowed_subjects and claims out of the configuration
				// returns them to the plugin's defaults: callers may no
				// longer choose a subject.
				Config: roleConfig(mount, "api", `ttl     = "15m"
  max_ttl = "1h"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					expectChange{addr: addr, attr: "allowed_subjects", before: []string{"svc-*"}, after: []string{}},
				}},
				Check: checkPath(t, mount+"/roles/api", map[string]any{
					"allowed_subjects": []string{}, "claims": map[string]any{}, "allowed_claims": []string{},
					"token_type": "JWT", "subject_template": "{{identity.entity.id}}",
				}),
			},
			{
				// The ring's overlap bounds max_ttl: the plugin refuses, and
				// its message (field, bound, fix) is the diagnostic, on the
				// attribute it names.
				Config: roleConfig(mount, "api", `ttl     = "15m"
  max_ttl = "2h"`),
				ExpectError: msgRE(`Vault refused the write to jwt-role-life/roles/api`, `max_ttl = "2h"`, `max_ttl: 7200s plus 60s of clock skew is above ring "signer" verification_ttl (7200s)`, `lower max_ttl to at most 7140s`),
			},
			{
				// The refused apply changed nothing: the previous
				// configuration plans no change.
				Config: roleConfig(mount, "api", `ttl     = "15m"
  max_ttl = "1h"`),
				PlanOnly: true,
			},
			{
				Config: roleConfig(mount, "api-v2", `ttl     = "15m"
  max_ttl = "1h"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate),
				}},
				Check: checkReplaced(t, mount+"/roles/api", mount+"/roles/api-v2"),
			},
		},
	})
}
