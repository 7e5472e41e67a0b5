# Credentials are write-only: pass them from ephemeral variables (or an
# ephemeral resource) so they are in neither the plan nor the state.
variable "keys_bucket_access_key_id" {
  type      = string
  ephemeral = true
}

variable "keys_bucket_secret_access_key" {
  type      = string
  ephemeral = true
}

resource "jwtrotor_publisher" "keys_bucket" {
  name       = "keys-bucket"
  type       = "s3"
  bucket     = "example-issuer-keys"
  region     = "eu-west-1"
  public_url = "https://keys.example.com/"
  required   = true

  access_key_id     = var.keys_bucket_access_key_id
  secret_access_key = var.keys_bucket_secret_access_key
  # Terraform keeps no copy of the credentials, so it cannot see them
  # change: give the new ones and raise this number in the same apply.
  credentials_wo_version = 1
}

variable "dav_password" {
  type      = string
  ephemeral = true
}

resource "jwtrotor_publisher" "dav" {
  name       = "dav"
  type       = "webdav"
  url        = "https://dav.example.com/keys/"
  prefix     = "issuer-a/"
  public_url = "https://dav.example.com/keys/issuer-a/"

  username               = "jwt-rotor"
  password               = var.dav_password
  credentials_wo_version = 1
}
