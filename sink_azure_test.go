package jwtrotor

import (
	"testing"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// azureStore is Azurite's Blob service with a shared-key publisher, for
// the table of real stores (sink_test.go).
func azureStore(t *testing.T) storeUnderTest {
	s := testserver.Azure(t)
	p := &publisherEntry{Type: publisherAzure, AccountURL: s.AccountURL, Container: s.Container,
		AccountName: s.AccountName, AccountKey: s.AccountKey}
	bad := *p
	bad.AccountKey = "bm90LXRoZS1rZXktb2YtdGhpcy1hY2NvdW50LTAxMjM0NTY3ODk="
	return storeUnderTest{name: "azure_blob", sink: mustSink(t, p), badCreds: mustSink(t, &bad), public: s.PublicURL,
		// The container is public (as one serving verifiers is), and
		// Azurite serves a public blob to a GET whatever key signed it.
		stop: s.Stop, restart: s.Restart, remove: s.DeleteObject, cacheControl: true}
}
