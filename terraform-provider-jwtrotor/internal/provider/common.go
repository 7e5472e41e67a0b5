package provider

import (
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/diag"
)

// clientFrom is the client the provider's Configure made. It is nil before
// the provider is configured (Terraform validates schemas first).
func clientFrom(data any, diags *diag.Diagnostics) *vaultClient {
	if data == nil {
		return nil
	}
	c, ok := data.(*vaultClient)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("expected *vaultClient, got %T", data))
		return nil
	}
	return c
}
