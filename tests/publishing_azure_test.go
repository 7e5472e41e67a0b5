package tests

import (
	"testing"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// The azure_blob store of the publishing tests: Azurite's Blob service
// (testserver.Azure), its container public, as a container serving an
// issuer's documents on Azure is. The copies' public URLs are the Azure
// workload identity layout: <account URL>/<container>/<prefix>, the
// issuer being that without its final slash.

func azurePublished(t *testing.T) (publishedStore, *testserver.AzureServer) {
	t.Helper()
	s := testserver.Azure(t)
	return publishedStore{name: "azure_blob", base: s.PublicURL(copyPrefix), fields: azureFields(s)}, s
}

// azureFields are the settings of a publisher writing to s with the
// account's shared key.
func azureFields(s *testserver.AzureServer) map[string]any {
	return map[string]any{"type": "azure_blob", "account_url": s.AccountURL, "container": s.Container,
		"account_name": s.AccountName, "account_key": s.AccountKey}
}

// faultAzurePublisher writes an azure_blob publisher of the store s under
// prefix, its public_url the container's URL of prefix; extra overrides.
func faultAzurePublisher(t testing.TB, c *vaultClient, m *mount, name string, s *testserver.AzureServer, prefix string, extra map[string]any) {
	t.Helper()
	fields := azureFields(s)
	fields["prefix"], fields["public_url"] = prefix, s.PublicURL(prefix)
	for k, v := range extra {
		fields[k] = v
	}
	faultWritePublisher(t, c, m, name, fields)
}
