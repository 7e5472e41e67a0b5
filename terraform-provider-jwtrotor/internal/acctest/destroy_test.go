package acctest

import (
	"fmt"
	"testing"

	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"
)

// signingRing is a ring whose first key is forced active, so its keys have
// signed and a delete must keep them published.
func signingRing(name, extra string) string {
	return fmt.Sprintf(`
resource "jwtrotor_key_ring" "%[1]s" {
  name             = %[1]q
  algorithm        = "ES256"
  rotation_period  = "1h"
  publish_lead     = "30m"
  verification_ttl = "2h"
  %[2]s
}

resource "jwtrotor_rotation" "%[1]s" {
  ring  = jwtrotor_key_ring.%[1]s.name
  force = true
}
`, name, extra)
}

// Destroying a ring: refused with the plugin's message while a role uses
// it; by default a drain that keeps its keys in the JWKS and its name
// taken; with force_destroy, its keys leave the JWKS at once and the name
// is free again.
func TestAccKeyRingDestroy(t *testing.T) {
	need(t)
	mount := newMount(t, "ring-destroy")
	var drainedKID, forcedKID string
	activeOf := func(ring string, into *string) resource.TestCheckFunc {
		return func(s *terraform.State) error {
			a, err := attrs(s, "jwtrotor_rotation."+ring)
			if err != nil {
				return err
			}
			*into = a["promoted_kid"]
			if *into == "" || !contains(jwksKIDs(t, mount, "jwks"), *into) {
				return fmt.Errorf("ring %s: active kid %q is not in the JWKS", ring, *into)
			}
			return nil
		}
	}

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		Steps: []resource.TestStep{
			{
				Config: providerBlock(mount) + signingRing("drained", ""),
				Check:  activeOf("drained", &drainedKID),
			},
			{
				// A role made outside Terraform uses the ring: destroy is
				// refused with the plugin's message.
				PreConfig: func() {
					vaultWrite(t, mount+"/roles/outsider", map[string]any{"key": "drained", "audiences": "https://x.example.com"})
				},
				Config:      providerBlock(mount),
				ExpectError: msgRE(`Vault refused to delete `+mount+`/keys/drained`, `name: ring "drained" is used by role(s) outsider; delete those roles or point them at another ring first`),
			},
			{
				PreConfig: func() {
					if _, err := env.root.Logical().Delete(mount + "/roles/outsider"); err != nil {
						t.Fatal(err)
					}
				},
				Config: providerBlock(mount),
				Check: func(*terraform.State) error {
					if vaultRead(t, mount+"/keys/drained") != nil {
						return fmt.Errorf("the drained ring is still readable")
					}
					if !contains(jwksKIDs(t, mount, "jwks"), drainedKID) {
						return fmt.Errorf("the drained ring's key %s left the JWKS at once; tokens it signed would stop verifying", drainedKID)
					}
					return nil
				},
			},
			{
				// The drained ring's name stays taken until its keys leave.
				Config:      providerBlock(mount) + signingRing("drained", ""),
				ExpectError: msgRE(`name: ring "drained" was deleted and its keys stay in the JWKS until`, `choose another name`),
			},
			{
				Config: providerBlock(mount) + signingRing("forced", "force_destroy = true"),
				Check:  activeOf("forced", &forcedKID),
			},
			{
				Config: providerBlock(mount),
				Check: func(*terraform.State) error {
					if contains(jwksKIDs(t, mount, "jwks"), forcedKID) {
						return fmt.Errorf("force_destroy left key %s in the JWKS", forcedKID)
					}
					if !contains(jwksKIDs(t, mount, "jwks"), drainedKID) {
						return fmt.Errorf("the drained ring's key %s left with the forced one", drainedKID)
					}
					return nil
				},
			},
			{
				// After a forced delete the name is free again.
				Config: providerBlock(mount) + signingRing("forced", "force_destroy = true"),
			},
		},
	})
}
