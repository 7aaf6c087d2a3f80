"""The inference surfaces: `/openai/deployments/{d}/…` (dated) and `/openai/v1/…`."""
