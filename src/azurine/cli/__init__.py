"""The `azurine` command."""
