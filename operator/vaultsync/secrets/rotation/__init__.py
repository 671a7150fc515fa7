"""VaultSecret rotation, pure: when it is due, new values, and the record kept in Vault."""
