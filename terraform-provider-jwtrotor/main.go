// Command terraform-provider-jwtrotor is the Terraform provider for the
// vault-plugin-jwt-rotor secrets engine.
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	tfaddr "github.com/hashicorp/terraform-registry-address"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/terraform-provider-jwtrotor/internal/provider"
)

// version is set at build time (make provider).
var version = "dev"

func main() {
	var debug bool
	flag.BoolVar(&debug, "debug", false, "run with support for debuggers such as delve")
	flag.Parse()
	// The source address "jwt-rotor/jwtrotor" of required_providers, which
	// Terraform expands with its default host.
	addr := tfaddr.NewProvider(tfaddr.DefaultProviderRegistryHost, "jwt-rotor", "jwtrotor")
	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: addr.String(),
		Debug:   debug,
	})
	if err != nil {
		log.Fatal(err)
	}
}
