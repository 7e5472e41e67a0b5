# One Vault server with integrated storage (Raft) on loopback addresses: the
# topology of the drill scripts (scripts/raft-single.sh,
# scripts/raft-cluster.sh, through scripts/raft-lib.sh) and of the
# acceptance tests' crash and failover scenarios (testserver/raft.go),
# which both fill in the @...@ fields. Loopback only, so no TLS: in
# production, terminate TLS on the listener (docs/operations.md).
storage "raft" {
  path                   = "@DIR@/data"
  node_id                = "@NODE_ID@"
  # 1 elects a leader as quickly as Raft allows (Vault's default is 5).
  performance_multiplier = @PERFORMANCE_MULTIPLIER@
@RETRY_JOIN@}

listener "tcp" {
  address         = "127.0.0.1:@API_PORT@"
  cluster_address = "127.0.0.1:@CLUSTER_PORT@"
  tls_disable     = true
}

api_addr         = "http://127.0.0.1:@API_PORT@"
cluster_addr     = "https://127.0.0.1:@CLUSTER_PORT@"
disable_mlock    = true
plugin_directory = "@DIR@/plugins"
ui               = false
log_level        = "info"
