"""Donor and joiner per method: the sequence of steps, nothing tool-specific."""
