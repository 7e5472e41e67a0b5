package acctest

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

func configConfig(mount, body string) string {
	return providerBlock(mount) + fmt.Sprintf(`
resource "jwtrotor_config" "c" {
  issuer = "https://vault.example.com/v1/%s"
  %s
}
`, mount, body)
}

// The config's life in Terraform: create takes over a config that already
// has values, no drift, update in place, import by mount, an out-of-band
// change shown and undone, the plugin's cross-ring refusal, and a destroy
// that leaves the values in Vault.
func TestAccConfigLifecycle(t *testing.T) {
	need(t)
	mount := newMount(t, "config-life")
	const addr = "jwtrotor_config.c"
	issuer := "https://vault.example.com/v1/" + mount
	// Values set before Terraform manages the config.
	vaultWrite(t, mount+"/config", map[string]any{"jwks_max_age": 60, "verifiers": []string{"old"}, "verifier_cidrs": []string{"192.168.0.0/16"}})

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		CheckDestroy: func(*terraform.State) error {
			// Destroy removes the resource from the state only.
			data := vaultRead(t, mount+"/config")
			if data["issuer"] != issuer || vaultNumber(t, data, "jwks_max_age") != 600 {
				return fmt.Errorf("the config changed on destroy: %v", data)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				// verifier_cidrs is left out: the create sets it to its
				// default (none), so Vault ends up as the plan says.
				Config: configConfig(mount, `jwks_max_age = "5m"
  verifiers    = ["gateway", "billing"]`),
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "id", mount),
					resource.TestCheckResourceAttr(addr, "jwks_max_age", "5m"),
					resource.TestCheckResourceAttr(addr, "verifier_cidrs.#", "0"),
					checkPath(t, mount+"/config", map[string]any{
						"issuer": issuer, "jwks_max_age": 300, "verifiers": []string{"gateway", "billing"}, "verifier_cidrs": []string{},
					}),
				),
			},
			{
				Config: configConfig(mount, `jwks_max_age   = "10m"
  verifiers      = ["gateway"]
  verifier_cidrs = ["10.0.0.0/8"]`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: checkPath(t, mount+"/config", map[string]any{
					"jwks_max_age": 600, "verifiers": []string{"gateway"}, "verifier_cidrs": []string{"10.0.0.0/8"},
				}),
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateId:     mount,
				ImportStateVerify: true,
			},
			{
				ResourceName:  addr,
				ImportState:   true,
				ImportStateId: "jwt",
				ExpectError:   msgRE(`jwtrotor_config is imported by its mount path, and this provider manages mount "` + mount + `"`),
			},
			{
				PreConfig: func() {
					vaultWrite(t, mount+"/config", map[string]any{"jwks_max_age": 120})
				},
				Config: configConfig(mount, `jwks_max_age   = "10m"
  verifiers      = ["gateway"]
  verifier_cidrs = ["10.0.0.0/8"]`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					expectChange{addr: addr, attr: "jwks_max_age", before: "2m", after: "10m"},
				}},
				Check: checkPath(t, mount+"/config", map[string]any{"jwks_max_age": 600}),
			},
			{
				// A ring made outside Terraform with a 30m lead: a max-age
				// above 15m would let verifiers miss its keys.
				PreConfig: func() {
					vaultWrite(t, mount+"/keys/outside", map[string]any{"algorithm": "ES256", "rotation_period": 3600, "publish_lead": 1800, "verification_ttl": 7200})
				},
				Config: configConfig(mount, `jwks_max_age   = "1h"
  verifiers      = ["gateway"]
  verifier_cidrs = ["10.0.0.0/8"]`),
				ExpectError: msgRE(`jwks_max_age = "1h"`, `jwks_max_age: 3600s needs every ring's publish_lead to be at least 7200s`, `outside (publish_lead 1800s)`),
			},
			{
				// The refused apply changed nothing: the previous
				// configuration plans no change.
				Config: configConfig(mount, `jwks_max_age   = "10m"
  verifiers      = ["gateway"]
  verifier_cidrs = ["10.0.0.0/8"]`),
				PlanOnly: true,
			},
		},
	})
}
