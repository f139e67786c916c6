"""Compact R4 definitions and ValueSet enumerations, written by ``python -m profiles.generate``."""
