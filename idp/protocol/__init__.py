"""Pure OAuth 2.0 / OpenID Connect logic, one module per specification. Never imports flask or the database."""
