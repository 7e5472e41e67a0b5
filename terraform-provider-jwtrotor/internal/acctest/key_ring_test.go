package acctest

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/knownvalue"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/statecheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
	"github.com/hashicorp/terraform-plugin-testing/tfjsonpath"
)

func ringConfig(mount, name, alg, extra string) string {
	return providerBlock(mount) + fmt.Sprintf(`
resource "jwtrotor_key_ring" "r" {
  name         = %q
  algorithm    = %q
  publish_lead = "30m"
  %s
}
`, name, alg, extra)
}

// A key ring's life in Terraform: create, no drift, update in place without
// moving existing keys, import, an out-of-band change shown and undone,
// replacement on a new name, destroy.
func TestAccKeyRingLifecycle(t *testing.T) {
	need(t)
	mount := newMount(t, "ring-life")
	const addr = "jwtrotor_key_ring.r"
	var first map[string]keyTimes

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		CheckDestroy: func(*terraform.State) error {
			for _, n := range []string{"payments", "payments-v2"} {
				if d := vaultRead(t, mount+"/keys/"+n); d != nil {
					return fmt.Errorf("ring %s still readable after destroy: %v", n, d)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				// Create; the post-apply plan must be empty (no drift).
				Config: ringConfig(mount, "payments", "ES256", `rotation_period = "1h"
  verification_ttl = "2h"`),
				ConfigStateChecks: []statecheck.StateCheck{
					// Empty, not null: a string a consumer can compare.
					statecheck.ExpectKnownValue(addr, tfjsonpath.New("active_kid"), knownvalue.StringExact("")),
				},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "id", "payments"),
					resource.TestCheckResourceAttr(addr, "algorithm", "ES256"),
					resource.TestCheckResourceAttr(addr, "rotation_period", "1h"),
					resource.TestCheckResourceAttr(addr, "publish_lead", "30m"),
					resource.TestCheckResourceAttr(addr, "verification_ttl", "2h"),
					// Defaults are the plugin's.
					resource.TestCheckResourceAttr(addr, "rsa_bits", "2048"),
					resource.TestCheckResourceAttr(addr, "min_verifier_coverage", "0"),
					resource.TestCheckResourceAttr(addr, "max_activation_delay", "0s"),
					resource.TestCheckResourceAttr(addr, "force_destroy", "false"),
					// A new ring's first key is pending for publish_lead.
					resource.TestCheckResourceAttr(addr, "active_kid", ""),
					resource.TestCheckResourceAttrPair(addr, "pending_kid", addr, "signing_keys.0.kid"),
					resource.TestCheckResourceAttr(addr, "signing_keys.0.state", "pending"),
					resource.TestCheckResourceAttr(addr, "signing_keys.0.alg", "ES256"),
					func(s *terraform.State) error {
						a, err := attrs(s, addr)
						if err != nil {
							return err
						}
						data := vaultRead(t, mount+"/keys/payments")
						for field, want := range map[string]int64{"rotation_period": 3600, "publish_lead": 1800, "verification_ttl": 7200} {
							if got := vaultNumber(t, data, field); got != want {
								return fmt.Errorf("Vault %s = %d, want %d", field, got, want)
							}
						}
						first = ringKeys(t, mount, "payments")
						if n := atoi(t, a["signing_keys.#"]); n != len(first) || n < 1 {
							return fmt.Errorf("state has %d keys, Vault %d", n, len(first))
						}
						if next := vaultNumber(t, data, "next_rotation"); a["next_rotation"] != fmt.Sprint(next) || next == 0 {
							return fmt.Errorf("next_rotation: state %s, Vault %d", a["next_rotation"], next)
						}
						return nil
					},
				),
			},
			{
				// In place: a longer period, a longer overlap, a new algorithm.
				Config: ringConfig(mount, "payments", "EdDSA", `rotation_period = "2h"
  verification_ttl = "3h"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "rotation_period", "2h"),
					resource.TestCheckResourceAttr(addr, "algorithm", "EdDSA"),
					func(*terraform.State) error {
						data := vaultRead(t, mount+"/keys/payments")
						if got := vaultNumber(t, data, "rotation_period"); got != 7200 {
							return fmt.Errorf("Vault rotation_period = %d, want 7200", got)
						}
						now := ringKeys(t, mount, "payments")
						if err := keysUnmoved(first, now); err != nil {
							return err
						}
						eddsa := 0
						for _, k := range now {
							if k.Alg == "EdDSA" {
								eddsa++
							}
						}
						if eddsa == 0 {
							return fmt.Errorf("no EdDSA key after the algorithm change: %+v", now)
						}
						return nil
					},
				),
			},
			{
				ResourceName:      addr,
				ImportState:       true,
				ImportStateId:     "payments",
				ImportStateVerify: true,
			},
			{
				// Someone lengthens the period with the Vault API: the next
				// plan shows it and the apply puts it back.
				PreConfig: func() {
					vaultWrite(t, mount+"/keys/payments", map[string]any{"rotation_period": 10800})
				},
				Config: ringConfig(mount, "payments", "EdDSA", `rotation_period = "2h"
  verification_ttl = "3h"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					expectChange{addr: addr, attr: "rotation_period", before: "3h", after: "2h"},
				}},
				Check: func(*terraform.State) error {
					if got := vaultNumber(t, vaultRead(t, mount+"/keys/payments"), "rotation_period"); got != 7200 {
						return fmt.Errorf("Vault rotation_period = %d after the apply, want 7200", got)
					}
					return nil
				},
			},
			{
				// A new name is a new ring.
				Config: ringConfig(mount, "payments-v2", "ES256", `rotation_period = "1h"
  verification_ttl = "2h"`),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionDestroyBeforeCreate),
				}},
				Check: checkReplaced(t, mount+"/keys/payments", mount+"/keys/payments-v2"),
			},
		},
	})
}
