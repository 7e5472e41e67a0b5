data "jwtrotor_publisher" "keys_bucket" {
  name       = jwtrotor_publisher.keys_bucket.name
  depends_on = [jwtrotor_publisher.keys_bucket]
}

# current, behind, failing or never_published; why it failed last.
output "keys_bucket_state" {
  value = "${data.jwtrotor_publisher.keys_bucket.state} ${data.jwtrotor_publisher.keys_bucket.last_error_reason}"
}
