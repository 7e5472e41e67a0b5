package acctest

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// The policy module of examples/complete is applied verbatim, as the root
// module with a provider block for the test's mount (in the example, the
// caller's provider block names the mount that hashicorp/vault enables).
// Its required_providers source, jwt-rotor/jwtrotor, is served from this
// process: nothing is installed.
func TestAccCompleteExample(t *testing.T) {
	need(t)
	t.Setenv("TF_ACC_PROVIDER_NAMESPACE", "jwt-rotor")
	example, err := os.ReadFile("../../examples/complete/policy/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	mount := newMount(t, "example")
	issuer := env.addr + "/v1/" + mount
	cfg := string(example) + providerBlock(mount)
	vars := func(generation string) config.Variables {
		return config.Variables{"issuer": config.StringVariable(issuer), "payments_generation": config.StringVariable(generation)}
	}
	checkJWKS := func(s *terraform.State) error {
		out := s.RootModule().Outputs
		jwks, _ := out["payments_jwks"].Value.(string)
		kid, _ := out["payments_active_kid"].Value.(string)
		var doc struct {
			Keys []struct {
				KID string `json:"kid"`
			} `json:"keys"`
		}
		if err := json.Unmarshal([]byte(jwks), &doc); err != nil || kid == "" || !strings.Contains(jwks, kid) {
			return fmt.Errorf("payments_jwks %s does not hold the active kid %q (%v)", jwks, kid, err)
		}
		if got := vaultRead(t, mount+"/keys/payments")["active_kid"]; got != kid {
			return fmt.Errorf("Vault's active kid is %v, the output says %s", got, kid)
		}
		return nil
	}
	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		CheckDestroy: func(*terraform.State) error {
			for _, p := range []string{"roles/payments-api", "roles/legacy-batch", "keys/payments", "keys/legacy"} {
				if vaultRead(t, mount+"/"+p) != nil {
					return fmt.Errorf("%s is still readable after destroy", p)
				}
			}
			if got := vaultRead(t, mount+"/config")["issuer"]; got != issuer {
				return fmt.Errorf("destroy changed the issuer to %v", got)
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config:          cfg,
				ConfigVariables: vars("1"),
				Check: resource.ComposeAggregateTestCheckFunc(
					checkJWKS,
					checkPath(t, mount+"/roles/legacy-batch", map[string]any{"key": "legacy", "token_type": "at+jwt", "max_ttl": 1800}),
					checkPath(t, mount+"/keys/legacy", map[string]any{"algorithm": "RS256", "rsa_bits": 3072, "rotation_period": 604800}),
					checkPath(t, mount+"/config", map[string]any{"issuer": issuer, "jwks_max_age": 300}),
				),
			},
			{
				Config:          cfg,
				ConfigVariables: vars("2"),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("jwtrotor_rotation.payments", plancheck.ResourceActionDestroyBeforeCreate),
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					checkJWKS,
					func(*terraform.State) error {
						if n := rotationsTotal(t, mount, "payments", "manual, forced"); n != 2 {
							return fmt.Errorf("%v forced rotations after two generations, want 2", n)
						}
						return nil
					},
				),
			},
		},
	})
}
