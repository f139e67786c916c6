"""The programme's Questionnaires as FHIR R4 JSON (a package only so that setuptools ships them)."""
