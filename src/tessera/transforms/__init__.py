"""Tessera's built-in transformations."""
