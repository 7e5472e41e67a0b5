# The import ID is the role's name.
terraform import jwtrotor_role.payments_api payments-api
