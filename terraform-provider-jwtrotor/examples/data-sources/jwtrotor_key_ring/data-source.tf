data "jwtrotor_key_ring" "payments" {
  name = "payments"
}

output "payments_next_rotation" {
  value = data.jwtrotor_key_ring.payments.next_rotation
}
