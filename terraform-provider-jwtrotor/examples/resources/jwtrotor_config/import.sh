# The import ID is the mount path the provider manages.
terraform import jwtrotor_config.this jwt
