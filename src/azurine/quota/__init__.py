"""Capacity: quota per subscription, location, model and deployment type (limiters come later)."""
