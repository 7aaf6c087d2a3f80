"""Engines: one interface over the runtimes that turn requests into tokens and vectors."""
