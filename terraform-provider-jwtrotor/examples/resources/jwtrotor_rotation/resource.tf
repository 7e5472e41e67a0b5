# Rotate the payments ring once per value of generation: change it (in a
# reviewed pull request) to rotate again. A re-apply does nothing.
resource "jwtrotor_rotation" "payments" {
  ring     = jwtrotor_key_ring.payments.name
  triggers = { generation = "2026-q1" }
}

# An emergency rotation away from one known key: if that key no longer
# signs, nothing happens.
resource "jwtrotor_rotation" "incident_1234" {
  ring                = jwtrotor_key_ring.payments.name
  expected_active_kid = "l9Gff9I__9OcZbF_ERKS2bLbQVaHHSl-6W2hiSoJvbE"
  revoke_active       = true
}
