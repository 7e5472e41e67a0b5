// Package testserver starts the Vault servers that the repository's
// acceptance tests run against: a dev server with the plugin registered by
// its checksum and version (DevServer), and Raft nodes with persistent
// storage for the crash and failover tests (RaftNode). It is used by the
// tests/ module and by the Terraform provider's acceptance tests, each
// through a replace directive, so that both start Vault the same way.
//
// Servers run from the repository's bin/vault with the plugin from
// bin/plugins (make vault plugin), each in a directory of its own with a
// copy of the plugin, on a pair of loopback ports drawn below the kernel's
// ephemeral range (FreePortPair). A server started with a testing.TB is
// stopped by t.Cleanup; on Linux the kernel also stops it if the test
// binary dies first (SetChildAttrs).
//
// It also starts the stores the publishers' sinks write to: an S3 gateway
// (S3: versitygw, from bin/versitygw, make versitygw) and a WebDAV server
// (WebDAV: Debian's apache2 with mod_dav, make apache2) and a Cloud
// Storage emulator (GCS: fake-gcs-server, make fake-gcs-server), each on a
// loopback port with its data in a directory of its own, stoppable and
// restartable on the same port.
//
// The package uses only the standard library: the modules that use it
// keep their own Vault clients.
package testserver
