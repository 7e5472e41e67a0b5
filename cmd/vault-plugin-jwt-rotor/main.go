// Command vault-plugin-jwt-rotor serves the jwt-rotor secrets engine to Vault.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	jwtrotor "github.com/jwt-rotor/vault-plugin-jwt-rotor"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	flags := meta.FlagSet()
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	tlsConfig := meta.GetTLSConfig()
	err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: jwtrotor.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(tlsConfig),
	})
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
