"""Scheduling of engine work: queues per model instance, cancellation on disconnect."""
