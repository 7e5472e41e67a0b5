# The import ID is the publisher's name. The first apply after an import
# sends the configuration's credentials (credentials_wo_version changes
# from null).
terraform import jwtrotor_publisher.keys_bucket keys-bucket
