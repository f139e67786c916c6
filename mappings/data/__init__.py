"""Scoring and schedule configuration (a package only so that setuptools ships the JSON files)."""
