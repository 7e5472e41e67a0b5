# The import ID is the ring's name.
terraform import jwtrotor_key_ring.payments payments
