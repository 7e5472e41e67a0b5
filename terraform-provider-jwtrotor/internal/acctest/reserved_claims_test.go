package acctest

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/terraform-provider-jwtrotor/internal/provider"
)

// The provider refuses at plan time the claims the plugin sets itself. Its
// list is a copy of the plugin's, which the plugin serves as the discovery
// document's claims_supported: the two are the same set, so a claim added
// to one and not the other fails here, not in an operator's apply.
func TestAccReservedClaimsMatchThePlugin(t *testing.T) {
	need(t)
	mount := newMount(t, "reserved")
	vaultWrite(t, mount+"/config", map[string]any{"issuer": env.addr + "/v1/" + mount})
	var doc struct {
		ClaimsSupported []string `json:"claims_supported"`
	}
	if err := json.Unmarshal(document(t, mount, ".well-known/openid-configuration"), &doc); err != nil {
		t.Fatal(err)
	}
	plugin, ours := slices.Sorted(slices.Values(doc.ClaimsSupported)), slices.Sorted(slices.Values(provider.ReservedClaims()))
	if len(plugin) == 0 || !slices.Equal(plugin, ours) {
		t.Fatalf("the plugin reserves %v (claims_supported), the provider refuses %v: keep them one set", plugin, ours)
	}
}
