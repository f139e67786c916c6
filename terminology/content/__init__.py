"""FHIR R4 JSON content (a package only so that setuptools ships the JSON files)."""
