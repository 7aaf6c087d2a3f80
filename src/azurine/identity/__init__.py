"""Who is calling: account keys, bearer tokens from Azurine's built-in issuer."""
