"""Sign-in: argon2 password hashes, signed bearer tokens, roles checked on every endpoint."""
